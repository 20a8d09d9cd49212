"""A corpus of real kube-apiserver answers, and the requests that produce them (issue 17).

``cases.py`` is the fixed list of requests; ``tests/apiserver_corpus/record.py`` sends it to a real
kube-apiserver and writes the answers to ``kube-apiserver-<version>.json`` here;
``tests/twin/test_apiserver_corpus.py`` sends the same requests to the twin's API server and
compares. Both servers run alone (no controllers), so both see exactly the same cluster.
"""
