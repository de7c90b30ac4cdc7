"""The conversation every chat platform shares: requests and replies, the
service, and policy (protected faces, usage limits). The top of ``core``.
"""
