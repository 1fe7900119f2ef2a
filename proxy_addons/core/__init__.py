"""The decision core: policy, lists, content and the one decision pipeline.

Pure: no mitmproxy, Flask or SQL here.
"""
