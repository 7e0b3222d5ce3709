"""Put this folder on PYTHONPATH and `datasets` cannot be imported, as on a machine where it is not installed
(the GPU machines have only torch, transformers, peft, safetensors, tqdm and tensorboard). Python imports
`sitecustomize` at startup, so subprocesses of a test get the same view. Any import of `datasets` fails as a
missing module would; a `datasets.` submodule too."""

import importlib.abc
import sys


class HideDatasets(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "datasets" or name.startswith("datasets."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by tests/no_datasets)", name=name)
        return None


sys.meta_path.insert(0, HideDatasets())
