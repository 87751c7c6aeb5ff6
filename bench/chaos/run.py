"""One chaos run: fresh servers, users flapping, a steady poster and the faults; then the final
connections, the accounting and the report."""

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.chaos.accounting import MAX_DETAILS, Tally, account, broken, read_closes, table, write_files
from bench.chaos.actors import Poster, User
from bench.chaos.servers import FAULTS, Deployment, Faults, Stored, deployed
from bench.chaos.settings import Journal, Settings

SETTLE_POLL = 0.5  # seconds between looks at the database while the final connections settle
LAST_ARRIVALS = 1.0  # seconds for the last sends to reach the clients once the database settled


@dataclass
class Outcome:
    """What a run found: the tallies per kind of client, the broken guarantees, and the report."""

    tallies: dict[str, Tally]
    problems: list[str]
    report: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems


def _each(work: Callable, items: list, workers: int = 16) -> list:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, items))


def settle(deployment: Deployment, user_ids: set[str], deadline: float) -> int:
    """Wait until no notification of these users is PENDING or sent but unconfirmed, or `deadline`
    (monotonic); how many still are."""
    while True:
        unsettled = sum(
            1
            for row in deployment.notifications().values()
            if row.user_id in user_ids and (row.status == "PENDING" or not row.confirmed)
        )
        if not unsettled or time.monotonic() >= deadline:
            return unsettled
        time.sleep(SETTLE_POLL)


@dataclass
class Run:
    """The actors of a run on `deployment`, started by `start()` and ended by `finish()`."""

    settings: Settings
    deployment: Deployment
    faults: tuple[str, ...]

    def __post_init__(self) -> None:
        self.journal = Journal()
        rng = random.Random(self.settings.seed)
        seeds = [rng.randrange(2**32) for _ in range(self.settings.users + 1)]
        self.users = [
            User(
                f"{'ack' if i % 2 == 0 else 'plain'}-{i:03d}",
                i % 2 == 0,
                self.deployment,
                self.settings,
                seed,
            )
            for i, seed in enumerate(seeds[:-1])
        ]
        self.poster = Poster(self.deployment, [user.user_id for user in self.users], self.settings, seeds[-1])
        self.chaos = Faults(self.deployment, self.settings, self.faults, self.journal)
        self.stop_users, self.stop_posting, self.stop_faults = (threading.Event() for _ in range(3))
        self.threads = [
            threading.Thread(target=u.flap, args=(self.stop_users,), daemon=True) for u in self.users
        ]
        self.poster_thread = threading.Thread(target=self.poster.run, args=(self.stop_posting,), daemon=True)
        self.faults_thread = threading.Thread(target=self.chaos.run, args=(self.stop_faults,), daemon=True)

    def chaos_phase(self) -> None:
        s = self.settings
        self.journal.note(f"{s.users} users come and go, {s.rate:g} POST/s, for {s.duration:g} s")
        for thread in [*self.threads, self.poster_thread, self.faults_thread]:
            thread.start()
        time.sleep(max(0.0, s.duration - self.journal.now()))
        self.stop_posting.set()
        self.poster_thread.join()
        self.journal.note(f"posting stopped: {self.poster.posts} POSTs, {self.poster.answered} answered 201")
        self.faults_thread.join()  # the last fault over, everything back up
        self.stop_users.set()
        for thread in self.threads:
            thread.join()

    def final_phase(self) -> tuple[dict[str, Stored], int, int]:
        """Every user connects once more; the stored rows once settled, how many are not, how many
        users could not connect."""
        self.deployment.restore()
        self.journal.note("every user connects once more")
        deadline = time.monotonic() + self.settings.settle_timeout
        finals = _each(lambda user: user.come_back(deadline), self.users)
        unsettled = settle(self.deployment, {user.user_id for user in self.users}, deadline)
        self.settle_seconds = self.settings.settle_timeout - (deadline - time.monotonic())
        time.sleep(LAST_ARRIVALS)
        self.journal.note(f"settled: {unsettled} notification(s) still PENDING or unconfirmed")
        return self.deployment.notifications(), unsettled, sum(1 for final in finals if final is None)

    def stop(self) -> None:
        for event in (self.stop_posting, self.stop_faults, self.stop_users):
            event.set()
        _each(User.close_all, self.users)

    def report(
        self,
        stored: dict[str, Stored],
        tallies: dict[str, Tally],
        problems: list[str],
        unsettled: int,
        no_final: int,
        chaos_seconds: float,
    ) -> list[str]:
        users, poster = self.users, self.poster
        departures = sum((user.departures for user in users), Counter())
        not_stored = len(set(poster.created) - set(stored))
        lines = [
            f"chaos run: {self.deployment.description}; {self.settings.describe()}",
            f"duration: {chaos_seconds:.0f} s of chaos, then {self.settle_seconds:.1f} s for the final "
            f"connections to settle ({no_final} user(s) could not connect); {self.journal.now():.0f} s "
            "with the accounting and the servers' stop",
            f"POSTs: {poster.posts} sent, {poster.answered} answered 201"
            + "".join(f", {count} {reason}" for reason, count in sorted(poster.failures.items()))
            + f"; {len(stored)} notifications stored, {poster.topic_rows} of them from topic sends, "
            f"{len(set(stored) - set(poster.created)) - poster.topic_rows} from POSTs whose answer was lost; "
            f"{not_stored} answered but not stored",
            f"connections: {sum(len(user.connections) for user in users)} opened, "
            f"{sum(user.refused for user in users)} attempts failed; departures: "
            + ", ".join(f"{way} {count}" for way, count in sorted(departures.items())),
            "faults:" + ("" if self.chaos.applied or self.chaos.errors else " none"),
            *(f"  {line}" for line in self.chaos.applied + self.chaos.errors),
            "",
            *table(tallies),
            "",
            f"unsettled at the end: {unsettled} (PENDING, or DELIVERED and never confirmed: "
            + ", ".join(f"{kind} {t.stuck + t.unconfirmed}" for kind, t in tallies.items())
            + ")",
        ]
        for kind, tally in tallies.items():
            if tally.lost_on:
                lines.append(
                    f"{kind}: lost, by how the connections open at its send ended: "
                    + ", ".join(f"{how} {count}" for how, count in tally.lost_on.most_common())
                )
            if tally.sent_again_why:
                lines.append(
                    f"{kind}: sent again, why: "
                    + ", ".join(f"{why} {count}" for why, count in tally.sent_again_why.most_common())
                )
        lines.append("result: " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
        for kind, tally in tallies.items():
            for problem, items in tally.details.items():
                if (kind, problem) in (("acknowledging", "sent again"), ("plain", "lost")):
                    continue  # allowed: at least once, at most once
                lines.append(f"{problem} ({kind}), {min(len(items), MAX_DETAILS)} of {len(items)}:")
                lines.extend(f"  {json.dumps(item)}" for item in items[:MAX_DETAILS])
        return lines


def run(
    settings: Settings, workdir: Path, *, sqlite: bool = False, faults: tuple[str, ...] | None = None
) -> Outcome:
    """A whole run with its servers, logs and CSV files in `workdir`."""
    if faults is None:
        faults = () if sqlite else FAULTS
    with deployed(settings, workdir, sqlite) as deployment:
        chaos = Run(settings, deployment, faults)
        try:
            chaos.chaos_phase()
            chaos_seconds = chaos.journal.now()
            stored, unsettled, no_final = chaos.final_phase()
        finally:
            chaos.stop()
        paths = deployment.log_paths()
    read_closes(chaos.users, paths)
    tallies = account(chaos.users, stored, chaos.poster.created, settings.confirm_timeout)
    problems = broken(tallies, settings.max_duplicates)
    report = chaos.report(stored, tallies, problems, unsettled, no_final, chaos_seconds)
    details = {kind: tally.details for kind, tally in tallies.items()}
    (workdir / "problems.json").write_text(json.dumps(details, indent=1) + "\n")
    written = write_files(workdir, chaos.users, stored)
    report.append("files: " + ", ".join(str(path) for path in [*paths, *written, workdir / "problems.json"]))
    return Outcome(tallies, problems, report)
