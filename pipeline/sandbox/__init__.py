"""Running untrusted steps: the only code that mounts and spawns.

Kept empty on purpose: the sandbox's child process imports ``pipeline.sandbox.init``
with nothing else, so this package must stay free of imports.
"""
