"""crosscot: do explanations (chains of thought) generalize across large reasoning models?

The package is a Hydra-configured DAG of stages (generate -> truncate -> transfer
-> score, with ensemble and report beside them) whose engines are vLLM instances
hosted in Ray actors, one model per actor, and whose intermediate results are
content-addressed Arrow files.  Importing ``pipeline`` is cheap: vllm, ray,
torch and triton are imported only where used.
"""

__version__ = "0.1.0"

# config/ validates and hashes against the plug-ins through a protocol (it imports nothing above
# it): hand the real registries in, once, before any config is built.
from pipeline.plugins import install as _install_plugins  # noqa: E402

_install_plugins()
