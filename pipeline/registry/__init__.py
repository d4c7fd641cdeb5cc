"""An OCI distribution (registry v2) client: references, credentials, retries, verified
blob streams, uploads. ``transport`` is the only importer of httpx."""
