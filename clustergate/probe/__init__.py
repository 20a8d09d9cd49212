"""Code that runs inside probe pods: ``python -m clustergate.probe KIND [options]``.

It needs only the standard library, boto3 and dnspython (what the probe image installs), does
one thing per run and prints one JSON line with the result, which the checks read from the
pod's log. Secrets (tokens, AWS keys) never appear in that line.
"""
