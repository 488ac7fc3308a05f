"""Data: every file the kit reads, pinned, and what the training loop reads from it.

- `registry`: the data registry (canonical URL, checksum, license of every file); `download`: resumable,
  verified HTTP downloads; `curation`: the Curation Corpus article bodies, fetched from the web.
- `corpora`: pre-training corpora; `tasks`: the data-to-text tasks (E2E, WebNLG, DART, curation) and their splits;
  `encoding`: the token format of data-to-text examples.
- `streams`: in-memory training data (packed token streams, (prompt, target) pairs); `shards`: token shards on
  disk; `shard_stream`: training data read from them; `prepare`: `spdf data prepare`, which writes them;
  `tokenizer_spec`: what `--tokenizer gpt2|PATH` means for shards.
"""

from spdf_lib.data.registry import REGISTRY, DataError, DataFile, Dataset, dataset, fetch, fetch_file

__all__ = ["REGISTRY", "DataError", "DataFile", "Dataset", "dataset", "fetch", "fetch_file"]
