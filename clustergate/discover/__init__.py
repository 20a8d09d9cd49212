"""Discovery: what a live cluster and its AWS account say the cluster config should hold.

One module per source (``eks``, ``nodegroups``, ``irsa``, ``dns``, ``autoscaler``,
``cutover``), each returning :class:`Found` values that carry where they were read, so the
written config can say so. :mod:`clustergate.discover.calls` turns every failed request into one
:class:`DiscoveryError` naming the verb and resource.
"""
