"""The scenarios S1-S8, one module each, in the table `SCENARIOS`; what they share is in `common`."""

from . import s1_connects, s2_idle, s3_fanout, s4_bulk, s5_drain, s6_sustained, s7_throughput, s8_topic
from .common import Scenario

# Every scenario by its key, in the order they run.
SCENARIOS: dict[str, Scenario] = {
    "S1": s1_connects.SCENARIO,
    "S2": s2_idle.SCENARIO,
    "S3": s3_fanout.SCENARIO,
    "S4": s4_bulk.SCENARIO,
    "S5": s5_drain.SCENARIO,
    "S6": s6_sustained.SCENARIO,
    "S7": s7_throughput.SCENARIO,
    "S8": s8_topic.SCENARIO,
}
