"""AWS Bedrock: the `bedrock` provider type (family.py), its settings, the InvokeModel body
translation, SigV4 signing, AWS credentials and their refresh, the event-stream transcoder and
the error mapping."""
