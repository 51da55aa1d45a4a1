"""The node's kernel: settings, storage, keys and signing, errors, HTTP plumbing, well-known endpoints.

May import only ``schemas`` and the standard library / third-party packages; everything else imports it.
"""
