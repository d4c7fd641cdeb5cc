"""The application layer: what one command works on (the workspace), the scheduler,
images in the store, push, pull, the lock file, the remote cache and bootstrapping."""
