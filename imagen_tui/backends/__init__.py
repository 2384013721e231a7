"""Backend adapters: the protocol they speak (`base`), the registry from a
config `type:` to an adapter (`registry`, which imports each adapter on first
use), the shared HTTP policy of remote adapters (`http`), and the adapters."""
