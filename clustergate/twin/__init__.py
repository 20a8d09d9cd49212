"""The local twin of an EKS cluster; see cluster.py for how it is composed."""
