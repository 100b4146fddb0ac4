"""aibridgeproxyd: the CONNECT proxy for clients that cannot be pointed at the gateway.

connect.py  sans-IO decisions: the CONNECT target, the port, MITM or tunnel, the credential,
            the private-range policy
hosts.py    the hosts decrypted per provider, rebuilt on every provider reload
certs.py    the operator's CA; leaf certificates minted per host, cached, minted once
mitm.py     the decrypted HTTP/1.1 side: requests forwarded to the gateway, streamed back
tunnel.py   resolving, checking and connecting (directly or through an upstream proxy); relay
server.py   the listener: one task per connection, a connect_id in every log line
metrics.py  the coder_aibridgeproxyd_* series
"""
