"""Provisioning models: tiny random-weight models (:mod:`.tiny`), small real GGUF models converted to
safetensors (:mod:`.gguf`), files inside installed PyPI packages (:mod:`.packages`), and resolving a
ModelConfig to a local folder (:mod:`.models`)."""
