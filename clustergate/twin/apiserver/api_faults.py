"""Transient API failures on purpose (issue 12): a share of requests answered with 429 (as API
Priority and Fairness sheds load), 500 (as when etcd loses its leader), or a connection closed
without an answer (as a load balancer in front of the API server may do).

Each eligible request draws from its own generator seeded with ``<seed>/<request number>``, so
a run with a given seed and the same request sequence meets the same faults.
"""

from __future__ import annotations

import random
import secrets

from clustergate.twin.apiserver.errors import ApiError

KINDS = ("429", "500", "drop")
#: What Retry-After says on an injected 429, in seconds (APF answers 1 as well).
RETRY_AFTER = 1
_ETCD_FAILURE = "etcdserver: leader changed"


class ApiFaults:
    def __init__(self, rate: float, seed: int | str | None = None) -> None:
        self.rate = rate
        self.seed = secrets.token_hex(8) if seed is None else seed
        self._drawn = 0

    def draw(self) -> str | None:
        """The fault for the next eligible request (one of KINDS), or None."""
        if self.rate <= 0:
            return None
        self._drawn += 1
        generator = random.Random(f"{self.seed}/{self._drawn}")
        if generator.random() >= self.rate:
            return None
        return generator.choice(KINDS)


def too_many_requests() -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": RETRY_AFTER},
        {"Retry-After": str(RETRY_AFTER)},
    )


def internal_error() -> ApiError:
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {_ETCD_FAILURE}",
        {"causes": [{"message": _ETCD_FAILURE}]},
    )
