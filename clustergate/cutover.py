"""Walking a traffic cutover step by step, and judging each step on evidence.

For each step of ``cutover.steps``: set the new cluster's weight through the driver, wait until
it takes effect (the driver reads it back, where it can; then the split seen at the endpoint
moves), run a Locust load phase that stops as soon as every question below is decided, and
judge the step on all the requests the phase made:

- share: is the new cluster's share within ``weight ± tolerance``? Wald's sequential test
  (:class:`~clustergate.stats.SequentialShareTest`) decides while requests arrive and says how
  many it needed; when it is still undecided at the end of the phase, the confidence interval
  over every request decides (:func:`~clustergate.stats.share_check`). The interval also guards
  an acceptance: a split whose whole interval lies outside the band fails whatever the test said.
- errors, per backend: the error rate fails the SLO only when it is above it with significance
  (the interval's lower bound is above ``slo.error_rate_max``) and passes when the observed rate
  is within it, as canary analysis does; in between there is not enough data to say.
- latency, per backend: p95 and p99 within ``slo.p95_ms`` / ``slo.p99_ms``.
- new against old: a one-sided Mann-Whitney test with a median-ratio guard
  (:func:`~clustergate.stats.compare_latency`), when both clusters take traffic.

With the ``route53`` driver the step asks two separate questions (docs/cutover-route53.md).
Instead of waiting for the endpoint's split to move, it samples Route 53's own name servers
until they answer with the weight set (:func:`~clustergate.route53_answers.
check_route53_answers`, also a finding of the step); and the share, sequential test included,
counts the load's DNS resolutions, not its requests (:mod:`clustergate.resolutions`), since
every request on one cached answer rides the same draw. Too few resolutions for a verdict:
"undecidable", which fails the step like any other no verdict.

Each question has three answers: pass, fail, and no verdict (too little data). A step passes only
when every answer is pass; no verdict fails the step with that reason. A failed step rolls the
weight back to the last good one, reads it back, and fails with the step's numbers.

Fixed-sample tests (error rate, percentiles, the rank test) may stop a phase only once the
step's ``min_requests`` are in, so that looking every quarter second does not turn noise at
the start of a phase into a verdict; the sequential test may stop it at any time, that is
what it is built for.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import boto3
import dns.exception
import dns.nameserver
import dns.resolver
import urllib3
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes import client
from pydantic import TypeAdapter
from scipy.stats import norm

from clustergate.config import CutoverSection, CutoverStep, Route53Driver, WeightDriver
from clustergate.load_phase import PhaseError, RequestRecord, run_phase
from clustergate.resolutions import unit_outcomes, units_of
from clustergate.route53_answers import (
    AnswerCheck,
    AnswerSampleError,
    check_route53_answers,
    name_server_problems,
    parse_server,
)
from clustergate.runctx import RESTORE_LABEL, RESTORE_WEIGHTS, RunContext
from clustergate.stats import (
    Decision,
    LatencyComparison,
    Percentiles,
    ProportionInterval,
    SequentialShareResult,
    SequentialShareTest,
    ShareCheck,
    Verdict,
    compare_latency,
    latency_percentiles,
    proportion_interval,
    share_check,
    unit_share_check,
)
from clustergate.wait import WaitTimeout, poll_until
from clustergate.weights import (
    CommandWeights,
    ElbWeights,
    ObservedWeights,
    Route53Weights,
    WeightError,
    Weights,
    weights_for,
)

log = logging.getLogger("clustergate.cutover")

#: Fewest requests per backend for its percentiles, its error rate and the rank test.
MIN_BACKEND_SAMPLES = 30
#: How often a driver that can read back is asked whether the weight is set.
READBACK_INTERVAL_S = 0.5
#: Bounds of one probe batch (requests sent from this process to see the split move).
PROBE_MIN, PROBE_MAX = 50, 1000
PROBE_REQUEST_TIMEOUT_S = 5.0
#: Name of the ConfigMap (in the run namespace) that records the weight to put back.
RESTORE_CONFIGMAP = "cutover-restore-weights"


class CutoverFailed(AssertionError):
    """A step failed (after its rollback); the message carries the step's numbers."""


class StepAborted(Exception):
    """A step could not be judged: the weight did not take, or the load did not run."""


def _pct(share: float) -> str:
    return "n/a" if math.isnan(share) else f"{100 * share:.1f}%"


# --- the endpoint, seen from this process ---------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int  # 0 when no response came
    backend: str | None
    error: str | None


@dataclass(frozen=True)
class Split:
    """What one probe batch saw: how many answers named the new cluster, of those that named
    either cluster."""

    new: int
    named: int
    sent: int
    confidence: float

    @property
    def interval(self) -> ProportionInterval:
        return proportion_interval(self.new, self.named, self.confidence)

    @property
    def share(self) -> float:
        return self.new / self.named if self.named else math.nan

    def describe(self) -> str:
        unnamed = self.sent - self.named
        extra = f", {unnamed} answered by neither cluster" if unnamed else ""
        return f"new share {self.interval.describe()}{extra}"


class EndpointProbe:
    """Sends single requests to the cutover endpoint and tells which cluster answered each,
    by the response header first, then the JSON body field (as the locustfile does).

    With ``cutover.resolver`` set, the endpoint's host is resolved afresh through those name
    servers for every request (no cache: each request is a draw of its own) and the request
    goes to the address with the host in its Host header."""

    def __init__(self, section: CutoverSection) -> None:
        self.section = section
        self.url = section.endpoint.rstrip("/") + section.path
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=PROBE_REQUEST_TIMEOUT_S), retries=False
        )
        self._parts = urllib3.util.parse_url(self.url)
        self._resolver: dns.resolver.Resolver | None = None
        if section.resolver:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_server(server)) for server in section.resolver
            ]
            self._resolver.lifetime = PROBE_REQUEST_TIMEOUT_S

    def _target(self) -> tuple[str, dict[str, str]]:
        parts = self._parts
        if self._resolver is None or parts.host is None:
            return self.url, {}
        address = self._resolver.resolve(parts.host, "A", search=False).rrset[0].address
        url = parts._replace(host=address).url
        return url, {"Host": parts.netloc or parts.host}

    def ask(self) -> Answer:
        try:
            url, headers = self._target()
            response = self._http.request("GET", url, headers=headers)
        except (urllib3.exceptions.HTTPError, dns.exception.DNSException) as error:
            return Answer(0, None, f"{type(error).__name__}: {error}")
        return Answer(response.status, self._backend_of(response), None)

    def _backend_of(self, response: urllib3.BaseHTTPResponse) -> str | None:
        header = self.section.backend_header
        if header and response.headers.get(header):
            return str(response.headers[header])
        if self.section.backend_field:
            try:
                body = json.loads(response.data)
            except ValueError:
                return None
            if isinstance(body, dict) and body.get(self.section.backend_field) is not None:
                return str(body[self.section.backend_field])
        return None

    def split(self, count: int, confidence: float) -> Split:
        names = (self.section.old_backend, self.section.new_backend)
        backends = [self.ask().backend for _ in range(count)]
        named = [backend for backend in backends if backend in names]
        return Split(named.count(self.section.new_backend), len(named), count, confidence)


def endpoint_problems(probe: EndpointProbe, count: int = 20) -> list[str]:
    """Why the endpoint cannot be used for a cutover: answers that fail or name no cluster."""
    section = probe.section
    expected = (section.old_backend, section.new_backend)
    how = (
        f"header {section.backend_header}" if section.backend_header else ""
    ) or f"body field {section.backend_field}"
    answers = [probe.ask() for _ in range(count)]
    problems = []
    failed = Counter(a.error or f"HTTP {a.status}" for a in answers if not 200 <= a.status < 400)
    if failed:
        problems.append(
            f"{sum(failed.values())} of {count} GET {probe.url} failed: "
            + ", ".join(f"{what} x{n}" for what, n in failed.most_common(3))
        )
    unnamed = Counter(a.backend for a in answers if a.status and a.backend not in expected)
    if unnamed:
        problems.append(
            f"{sum(unnamed.values())} of {count} answers from {probe.url} named no cluster by "
            f"{how} (expected {' or '.join(expected)}, got "
            + ", ".join(f"{name!r} x{n}" for name, n in unnamed.most_common(3))
            + "): set cutover.backend_header / backend_field / old_backend / new_backend"
        )
    return problems


# --- the weight driver ------------------------------------------------------------------------


def driver_problems(weights: Weights) -> list[str]:
    """Why the driver's resources cannot be used: missing, unreadable, a missing command, or
    (Route 53) name servers that do not answer for the records."""
    try:
        if isinstance(weights, ElbWeights):
            weights.client.describe_listeners(ListenerArns=[weights.listener_arn])
            weights.client.describe_target_groups(
                TargetGroupArns=[weights.old_group, weights.new_group]
            )
        elif isinstance(weights, CommandWeights):
            program = shlex.split(weights.command)[0]
            if shutil.which(program) is None:
                return [f"{weights.description}: {program} is not an executable on PATH"]
        weights.get()
        if isinstance(weights, Route53Weights):
            return name_server_problems(weights)
    except ClientError as error:
        err = error.response.get("Error", {})
        return [f"{weights.description}: {err.get('Code')}: {err.get('Message')}"]
    except (BotoCoreError, WeightError) as error:
        return [f"{weights.description}: {error}"]
    return []


def original_weight(weights: Weights) -> int:
    """The new cluster's weight before the cutover. A driver that cannot read it back (a
    command, or weights moved by someone else) is taken to start where a cutover starts: 0."""
    current = weights.get()
    return 0 if current is None else current


def set_and_confirm(weights: Weights, weight: int, timeout_s: float) -> float:
    """Set ``weight`` and, when the driver can read back, wait until it does; return seconds."""
    started = time.monotonic()
    weights.set(weight)
    if weights.get() is not None:
        poll_until(
            weights.get,
            lambda current: current == weight,
            what=f"{weights.description} to read back weight {weight}%",
            timeout_s=timeout_s,
            describe=lambda current: f"reads {current}%",
            interval_s=READBACK_INTERVAL_S,
        )
    return time.monotonic() - started


def _probe_size(before: float, target: float, confidence: float) -> int:
    """Requests for one probe batch to tell ``target`` from ``before`` at ``confidence``: the
    interval's half-width must be below half the distance between them."""
    distance = abs(target - before)
    if distance == 0:
        return PROBE_MIN
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    middle = min(max((target + before) / 2, 0.05), 0.95)
    needed = math.ceil(z * z * middle * (1 - middle) / (distance / 2) ** 2)
    return min(max(needed, PROBE_MIN), PROBE_MAX)


def wait_for_split(
    probe: EndpointProbe,
    before: float,
    weight: int,
    tolerance: float,
    confidence: float,
    timeout_s: float,
) -> Split:
    """Probe the endpoint until its split has moved from ``before`` (the share seen before the
    change) towards ``weight``. A change smaller than the tolerance cannot be told from no
    change: then a split consistent with the weight's band is enough."""
    target = weight / 100
    size = _probe_size(before, target, confidence)
    band = (target - tolerance, target + tolerance)

    def followed(split: Split) -> bool:
        interval = split.interval
        if not split.named:
            return False
        if abs(target - before) <= tolerance:
            return interval.low <= band[1] and interval.high >= band[0]
        return interval.low > before if target > before else interval.high < before

    return poll_until(
        lambda: probe.split(size, confidence),
        followed,
        what=(
            f"the split at {probe.url} to follow weight {weight}% (new share before the change: "
            f"{_pct(before)}; probing {size} requests at a time)"
        ),
        timeout_s=timeout_s,
        describe=Split.describe,
        interval_s=0.0,
    )


# --- judging one step -------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendStats:
    name: str
    requests: int
    errors: int
    error_rate: ProportionInterval
    latency: Percentiles
    top_errors: tuple[tuple[str, int], ...]

    def describe(self) -> str:
        if not self.requests:
            return f"{self.name}: no requests"
        errors = f"{self.errors:,} errors ({_pct(self.error_rate.share)})"
        if self.top_errors:
            errors += " - " + ", ".join(f"{what} x{n}" for what, n in self.top_errors)
        return f"{self.name}: {self.requests:,} requests, {errors}; {self.latency.describe()}"


def _backend_stats(name: str, records: Sequence[RequestRecord], confidence: float) -> BackendStats:
    failed = [record for record in records if record.failed]
    kinds = Counter(record.error or f"HTTP {record.status}" for record in failed)
    return BackendStats(
        name,
        len(records),
        len(failed),
        proportion_interval(len(failed), len(records), confidence),
        latency_percentiles([record.latency_ms for record in records]),
        tuple(kinds.most_common(3)),
    )


@dataclass(frozen=True)
class Finding:
    verdict: Verdict
    text: str


@dataclass(frozen=True)
class StepResult:
    index: int
    steps: int
    weight: int
    requests: int
    share: ShareCheck
    sequential: SequentialShareResult
    backends: dict[str, BackendStats]
    #: Requests whose answer named neither cluster (mostly failures before any backend).
    unattributed: BackendStats
    latency: LatencyComparison | None
    findings: tuple[Finding, ...]
    verdict: Verdict
    duration_s: float = 0.0
    propagation_s: float = 0.0
    #: The whole step: setting the weight, its propagation, Locust's start and the phase.
    wall_s: float = 0.0
    stopped_early: bool = False
    requests_per_s: float = 0.0

    @property
    def problems(self) -> list[str]:
        """What failed; when nothing failed, what could not be decided."""
        if self.verdict is Verdict.PASS:
            return []
        return [f.text for f in self.findings if f.verdict is self.verdict]

    def describe(self) -> str:
        how = "stopped early" if self.stopped_early else "ran its full duration"
        lines = [
            f"step {self.index}/{self.steps}, weight {self.weight}%: {self.verdict.value} - "
            f"{self.requests:,} requests in {self.duration_s:.1f}s "
            f"({self.requests_per_s:,.0f}/s, {how}; weight took {self.propagation_s:.1f}s, "
            f"whole step {self.wall_s:.1f}s)",
            f"  {self.share.describe()}",
            f"  {self.sequential.describe()}",
            *(f"  {stats.describe()}" for stats in self.backends.values()),
        ]
        if self.unattributed.requests:
            lines.append(f"  {self.unattributed.describe()}")
        if self.latency is not None:
            lines.append(f"  {self.latency.describe()}")
        return "\n".join(lines)


def step_confidence(confidence: float, steps: int) -> float:
    """A step's share of the cutover's confidence (Bonferroni over the steps): with four
    steps at 0.99 each, a healthy cutover would fail by chance 4% of the time."""
    return 1 - (1 - confidence) / steps


@dataclass
class StepJudge:
    """Judges one step from its request records; :meth:`enough` is the phase's early stop."""

    section: CutoverSection
    step: CutoverStep
    index: int = 1
    steps: int = 1
    sprt: SequentialShareTest = field(init=False)
    #: The sequential test's decision that stopped the phase. It stands: replayed later over
    #: every record (sorted by start, with the requests still in flight at the stop) the path
    #: to a boundary can differ, and a sequential test decides where it first crosses one.
    decided: SequentialShareResult | None = field(init=False, default=None)
    #: Route 53 only: what its name servers answered once the weight was set.
    answers: AnswerCheck | None = None

    def __post_init__(self) -> None:
        alpha = 1 - self.confidence
        self.sprt = SequentialShareTest(
            self.step.weight / 100,
            self.section.tolerance,
            alpha=alpha,
            beta=alpha,
            unit=self.unit,
        )

    @property
    def by_resolution(self) -> bool:
        """Weighted DNS splits answers, not requests: the units are the clients' resolutions.
        An ALB (or anything else that splits each request) is judged per request."""
        return isinstance(self.section.driver, Route53Driver)

    @property
    def unit(self) -> str:
        return "resolutions" if self.by_resolution else "requests"

    @property
    def confidence(self) -> float:
        return step_confidence(self.section.confidence, self.steps)

    @property
    def _expected(self) -> list[str]:
        """The backends that must take traffic at this weight."""
        names = []
        if self.step.weight < 100:
            names.append(self.section.old_backend)
        if self.step.weight > 0:
            names.append(self.section.new_backend)
        return names

    def enough(self, records: Sequence[RequestRecord]) -> bool:
        named = self._named(records)
        sequential = self.sprt.evaluate(self._outcomes(records))
        if sequential.decision is not Decision.REJECT:
            if len(named) < self.step.min_requests:
                return False
            # The share's early stop is the sequential test's; the interval decides only
            # when the phase has run its full duration.
            verdict = self.judge(records, sequential).verdict
            if not (
                verdict is Verdict.FAIL
                or (verdict is Verdict.PASS and sequential.decision is Decision.ACCEPT)
            ):
                return False
        self.decided = sequential
        return True

    def _named(self, records: Sequence[RequestRecord]) -> list[RequestRecord]:
        names = (self.section.old_backend, self.section.new_backend)
        return [record for record in records if record.backend in names]

    def _outcomes(self, records: Sequence[RequestRecord]) -> list[bool]:
        """Per unit (request or resolution), in order: did it go to the new cluster?"""
        names = (self.section.old_backend, self.section.new_backend)
        if self.by_resolution:
            return unit_outcomes(units_of(records, names), self.section.new_backend)
        return [record.backend == self.section.new_backend for record in self._named(records)]

    def judge(
        self, records: Sequence[RequestRecord], sequential: SequentialShareResult | None = None
    ) -> StepResult:
        section, slo, confidence = self.section, self.section.slo, self.confidence
        named = self._named(records)
        outcomes = self._outcomes(records)
        target = self.step.weight / 100
        sequential = sequential or self.decided or self.sprt.evaluate(outcomes)
        if self.by_resolution:
            share = unit_share_check(
                outcomes, target, section.tolerance, confidence=confidence, unit=self.unit
            )
        else:
            share = share_check(
                sum(outcomes),
                len(outcomes),
                target,
                section.tolerance,
                confidence=confidence,
                min_requests=self.step.min_requests,
            )
        findings = [self._share_finding(share, sequential)]
        if self.answers is not None:
            findings.insert(0, Finding(self.answers.verdict, self.answers.describe()))
        by_name = {name: [r for r in named if r.backend == name] for name in self._expected}
        backends = {
            name: _backend_stats(name, chosen, confidence) for name, chosen in by_name.items()
        }
        for stats in backends.values():
            findings.extend(self._backend_findings(stats))
        names = (section.old_backend, section.new_backend)
        unattributed = _backend_stats(
            "answered by neither cluster",
            [r for r in records if r.backend not in names],
            confidence,
        )
        findings.append(
            self._rate_finding(
                proportion_interval(unattributed.requests, len(records), confidence),
                f"share of requests answered by neither {' nor '.join(names)}",
                unattributed,
            )
        )
        latency = None
        if len(by_name) == 2:
            latency = compare_latency(
                [r.latency_ms for r in by_name[section.old_backend]],
                [r.latency_ms for r in by_name[section.new_backend]],
                alpha=1 - confidence,
                max_median_ratio=slo.slowdown_ratio_max,
                min_samples=MIN_BACKEND_SAMPLES,
            )
            findings.append(Finding(latency.verdict, latency.describe()))
        verdicts = {finding.verdict for finding in findings}
        verdict = next(v for v in (Verdict.FAIL, Verdict.NO_VERDICT, Verdict.PASS) if v in verdicts)
        return StepResult(
            self.index,
            self.steps,
            self.step.weight,
            len(records),
            share,
            sequential,
            backends,
            unattributed,
            latency,
            tuple(findings),
            verdict,
        )

    def _share_finding(self, share: ShareCheck, sequential: SequentialShareResult) -> Finding:
        if sequential.decision is Decision.REJECT or share.verdict is Verdict.FAIL:
            text = (
                sequential.describe()
                if sequential.decision is Decision.REJECT
                else share.describe()
            )
            return Finding(Verdict.FAIL, f"traffic split off target: {text}")
        if sequential.decision is Decision.ACCEPT:
            return Finding(Verdict.PASS, sequential.describe())
        if share.verdict is Verdict.PASS:
            return Finding(Verdict.PASS, share.describe())
        if self.by_resolution and share.interval.trials < share.min_requests:
            return Finding(
                Verdict.NO_VERDICT,
                f"undecidable: {share.interval.trials:,} independent resolutions, need "
                f"{share.min_requests:,} for a verdict on whether clients follow the weight "
                "(more users, a longer max_duration_s or a shorter record TTL give more: "
                "docs/cutover-route53.md)",
            )
        return Finding(Verdict.NO_VERDICT, f"too little data on the split: {share.describe()}")

    def _backend_findings(self, stats: BackendStats) -> list[Finding]:
        slo = self.section.slo
        if stats.requests < MIN_BACKEND_SAMPLES:
            return [
                Finding(
                    Verdict.NO_VERDICT,
                    f"too little data on {stats.name}: {stats.requests} requests, need "
                    f"{MIN_BACKEND_SAMPLES} for its error rate and latency",
                )
            ]
        findings = [self._rate_finding(stats.error_rate, f"{stats.name} error rate", stats)]
        for label, value, limit in (
            ("p95", stats.latency.p95, slo.p95_ms),
            ("p99", stats.latency.p99, slo.p99_ms),
        ):
            verdict = Verdict.PASS if value <= limit else Verdict.FAIL
            findings.append(
                Finding(
                    verdict,
                    f"{stats.name} latency {label} {value:.1f} ms "
                    f"{'within' if verdict is Verdict.PASS else 'above'} the SLO {limit:g} ms "
                    f"({stats.latency.describe()})",
                )
            )
        return findings

    def _rate_finding(self, rate: ProportionInterval, label: str, stats: BackendStats) -> Finding:
        limit = self.section.slo.error_rate_max
        observed = f"{label} {rate.describe()}, SLO {_pct(limit)}"
        kinds = ", ".join(f"{what} x{n}" for what, n in stats.top_errors)
        if rate.trials == 0 or rate.share <= limit:
            return Finding(Verdict.PASS, f"{observed}: within")
        if rate.low > limit:
            return Finding(Verdict.FAIL, f"{observed}: above the SLO ({kinds})")
        return Finding(
            Verdict.NO_VERDICT,
            f"{observed}: above the SLO but not significantly, too little data ({kinds})",
        )


# --- walking the steps ------------------------------------------------------------------------


@dataclass
class Cutover:
    """One walk through ``section.steps``; ``on_step`` sees each step's result (also a failed
    one) before the walk goes on or fails."""

    section: CutoverSection
    weights: Weights
    propagation_timeout_s: float
    run_dir: Path
    workers: int = 0
    on_step: Callable[[StepResult], None] = lambda result: None
    probe: EndpointProbe = field(init=False)
    results: list[StepResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.probe = EndpointProbe(self.section)

    def walk(self, start_weight: int) -> list[StepResult]:
        """Walk every step from ``start_weight``; raise :class:`CutoverFailed` at the first bad
        step, after rolling back to the last good weight."""
        section = self.section
        first = section.steps[0].weight / 100
        before = self.probe.split(
            _probe_size(start_weight / 100, first, section.confidence), section.confidence
        )
        if not before.named:
            raise CutoverFailed(
                f"before the cutover, no answer from {self.probe.url} named a cluster: "
                f"{before.describe()}; nothing was changed"
            )
        last_good, seen = start_weight, before.share
        for index, step in enumerate(section.steps, start=1):
            try:
                result = self._step(index, step, seen)
            except StepAborted as error:
                self._fail(index, step, last_good, str(error))
            self.results.append(result)
            self.on_step(result)
            if result.verdict is not Verdict.PASS:
                self._fail(
                    index,
                    step,
                    last_good,
                    "; ".join(result.problems) + "\n" + result.describe(),
                )
            last_good, seen = step.weight, result.share.interval.share
        return self.results

    def _step(self, index: int, step: CutoverStep, seen: float) -> StepResult:
        section = self.section
        started = time.monotonic()
        log.info(
            "cutover step %d: setting weight %d%% via %s",
            index,
            step.weight,
            self.weights.description,
        )
        try:
            set_and_confirm(self.weights, step.weight, self.propagation_timeout_s)
        except (WaitTimeout, WeightError, ClientError, BotoCoreError) as error:
            raise StepAborted(f"the weight was not set: {error}") from None
        remaining = max(self.propagation_timeout_s - (time.monotonic() - started), 1.0)
        answers = None
        if isinstance(self.weights, Route53Weights):
            answers = self._await_answers(step.weight, remaining)
        else:
            self._await_split(step.weight, seen, remaining)
        propagation = time.monotonic() - started
        judge = StepJudge(section, step, index, len(section.steps), answers=answers)
        try:
            phase = run_phase(
                section.endpoint,
                step.users,
                step.spawn_rate,
                step.max_duration_s,
                self.run_dir / f"step-{index}-weight-{step.weight}",
                self.workers,
                judge.enough,
                path=section.path,
                backend_header=section.backend_header or "",
                backend_field=section.backend_field or "",
                resolver=section.resolver,
            )
        except PhaseError as error:
            raise StepAborted(f"the load phase did not run: {error}") from None
        return replace(
            judge.judge(phase.records),
            duration_s=phase.duration_s,
            propagation_s=propagation,
            wall_s=time.monotonic() - started,
            stopped_early=phase.stopped_early,
            requests_per_s=phase.requests_per_s,
        )

    def _await_split(self, weight: int, seen: float, timeout_s: float) -> None:
        section = self.section
        try:
            wait_for_split(
                self.probe, seen, weight, section.tolerance, section.confidence, timeout_s
            )
        except WaitTimeout as error:
            raise StepAborted(
                f"traffic did not follow the weight change ({self.weights.description} is set "
                f"to {weight}%, the endpoint does not split by it): {error}"
            ) from None

    def _await_answers(self, weight: int, timeout_s: float) -> AnswerCheck:
        """Until Route 53's own name servers answer with ``weight`` (changes take up to a
        minute to reach them all). Each look is a fresh sample; the one that passes is kept
        as the step's evidence. A sample that never passes aborts the step with the last."""
        assert isinstance(self.weights, Route53Weights)
        weights, section = self.weights, self.section
        confidence = step_confidence(section.confidence, len(section.steps))
        try:
            return poll_until(
                lambda: check_route53_answers(weights, weight, section.tolerance, confidence),
                lambda check: check.verdict is Verdict.PASS,
                what=f"Route 53's name servers to answer {weights.record_name} with weight "
                f"{weight}%",
                timeout_s=timeout_s,
                describe=AnswerCheck.describe,
                interval_s=READBACK_INTERVAL_S,
            )
        except AnswerSampleError as error:
            raise StepAborted(f"Route 53's answers could not be sampled: {error}") from None
        except WaitTimeout as error:
            raise StepAborted(
                f"Route 53 does not answer with the weight set ({weights.description} set to "
                f"{weight}%): {error}"
            ) from None

    def _fail(self, index: int, step: CutoverStep, last_good: int, why: str) -> NoReturn:
        try:
            set_and_confirm(self.weights, last_good, self.propagation_timeout_s)
            rollback = f"rolled back to {last_good}% ({self.weights.description}"
            current = self.weights.get()
            rollback += f" reads back {current}%)" if current is not None else ")"
        except (WaitTimeout, WeightError, ClientError, BotoCoreError) as error:
            rollback = f"ROLLBACK TO {last_good}% FAILED: {error}"
        raise CutoverFailed(
            f"cutover step {index}/{len(self.section.steps)} (weight {step.weight}%) failed, "
            f"{rollback}: {why}"
        )


# --- putting the weight back, also after a killed run -----------------------------------------


def guard_original_weight(
    run: RunContext, section: CutoverSection, weights: Weights, original: int, timeout_s: float
) -> None:
    """Put ``original`` back when the check ends, and record it in the run namespace so that
    ``--sweep`` can put it back after a run killed before its teardown."""
    body = client.V1ConfigMap(
        metadata=run.metadata(RESTORE_CONFIGMAP, **{RESTORE_LABEL: RESTORE_WEIGHTS}),
        data={
            "driver": section.driver.model_dump_json(),
            "description": weights.description,
            "weight": str(original),
            "recorded_at": datetime.now(UTC).isoformat(),
        },
    )
    core = run.cluster.core()
    core.create_namespaced_config_map(run.namespace, body)

    def put_back() -> None:
        set_and_confirm(weights, original, timeout_s)
        core.delete_namespaced_config_map(RESTORE_CONFIGMAP, run.namespace)

    run.on_teardown(f"set {weights.description} back to new weight {original}%", put_back)


def restore_recorded_weight(data: dict[str, str], session: boto3.Session) -> str:
    """Restore what :func:`guard_original_weight` recorded (the sweep's callback)."""
    driver: Any = TypeAdapter(WeightDriver).validate_json(data["driver"])
    weights = weights_for(driver, session)
    weight = int(data["weight"])
    if isinstance(weights, ObservedWeights):
        return f"{weights.description}: nothing to put back"
    weights.set(weight)
    current = weights.get()
    if current is not None and current != weight:
        raise WeightError(f"{weights.description} reads back {current}% after setting {weight}%")
    return f"{weights.description} set back to new weight {weight}%"
