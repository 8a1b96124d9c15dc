"""Talking to tako-server: SSHSIG signing, key discovery, RPC client, protocol."""
