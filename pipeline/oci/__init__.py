"""OCI image values: media types, the image config, manifests and indexes, platforms.

Pure: no I/O. The store, the exporter and the registry client all describe images with
these values, so each fact (a media type, the default PATH, the architecture map) is
written once, here.
"""
