"""The scheduler agent's cron matcher agrees with croniter, and validation accepts exactly what
the agent can run."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from croniter import croniter
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from projectdeployer.agents.scheduler import ALIASES, CronError, parse_cron
from projectdeployer.core.errors import ConfigError
from projectdeployer.project.validation import cron_problem

pytestmark = pytest.mark.unit

RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@st.composite
def _value(draw: st.DrawFn, index: int, value: int) -> str:
    name = None
    if index == 3 and draw(st.booleans()):
        name = MONTHS[value - 1]
    elif index == 4 and value <= 6 and draw(st.booleans()):
        name = DAYS[value]
    if name is None:
        return str(value)
    return draw(st.sampled_from([name, name.upper(), name.capitalize()]))


@st.composite
def _item(draw: st.DrawFn, index: int) -> str:
    low, high = RANGES[index]
    top = 6 if index == 4 else high
    step = draw(st.integers(1, (high - low) // 2 + 3))
    kind = draw(st.sampled_from(["star-step", "value", "range", "range-step", "start-step"]))
    if kind == "star-step":
        return f"*/{step}"
    if kind == "value":
        return draw(_value(index, draw(st.integers(low, high))))
    if kind == "start-step":
        return f"{draw(_value(index, draw(st.integers(low, top))))}/{step}"
    first = draw(st.integers(low, high - 1))
    last = draw(st.integers(first + 1, high))
    text = f"{draw(_value(index, first))}-{draw(_value(index, last))}"
    return text + (f"/{step}" if kind == "range-step" else "")


@st.composite
def _field(draw: st.DrawFn, index: int) -> str:
    if draw(st.integers(0, 3)) == 0:
        return "*"
    return ",".join(draw(st.lists(_item(index), min_size=1, max_size=3)))


#: Every expression the agent accepts, in the shapes people write (and some they don't).
expressions = st.one_of(
    st.tuples(*(_field(i) for i in range(5))).map(" ".join),
    st.sampled_from(sorted(ALIASES) + [a.upper() for a in ALIASES]),
)
minutes = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 12, 31)).map(lambda d: d.replace(second=0, microsecond=0))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, minutes)
def test_matches_like_croniter_at_any_minute(expr: str, when: datetime) -> None:
    cron = parse_cron(expr)
    assert croniter.is_valid(expr), f"the agent accepts {expr!r}, croniter does not"
    assume(cron.possible())
    assert cron.matches(when) == croniter.match(expr, when), (expr, when, cron.day_or)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, minutes)
def test_croniters_next_run_times_are_the_agents(expr: str, start: datetime) -> None:
    """Positive cases (random minutes rarely match): croniter's next three run times match,
    and the minutes just before each do not unless croniter runs then too."""
    cron = parse_cron(expr)
    assume(cron.possible())
    it = croniter(expr, start)
    previous = start
    for _ in range(3):
        nxt = it.get_next(datetime)
        assert cron.matches(nxt), (expr, nxt)
        for back in range(1, 4):
            before = nxt - timedelta(minutes=back)
            if before <= previous:
                break
            assert not cron.matches(before), (expr, before, nxt)
        previous = nxt


def _days(expr: str, start: datetime, days: int) -> list[datetime]:
    cron = parse_cron(expr)
    return [start + timedelta(days=d) for d in range(days) if cron.matches(start + timedelta(days=d))]


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    may = datetime(2024, 5, 1)  # a Wednesday
    fridays = [d for d in (may + timedelta(days=i) for i in range(31)) if d.weekday() == 4]
    assert _days("0 0 13 * fri", may, 31) == sorted({datetime(2024, 5, 13), *fridays})  # either one
    assert _days("0 0 13 * *", may, 31) == [datetime(2024, 5, 13)]
    assert _days("0 0 * * fri", may, 31) == fridays
    assert _days("0 0 1-7 * mon", may, 31) == sorted({*(datetime(2024, 5, d) for d in range(1, 8)), *(d for d in (may + timedelta(days=i) for i in range(31)) if d.weekday() == 0)})
    # croniter's reading of "restricted": a day field is '*', or covers every value while the
    # other one contains a '*'. "*/2" in day-of-week is restricted (Vixie cron would AND it).
    assert parse_cron("0 0 */2 * 1").day_or
    assert not parse_cron("0 0 1-31 * */2").day_or
    assert parse_cron("0 0 1-31 * 1").day_or  # every day: the 1st..31st OR Mondays


def test_names_sunday_aliases_and_case() -> None:
    assert parse_cron("0 0 * JAN-Mar mon-FRI").months == {1, 2, 3}
    assert parse_cron("0 0 * * mon-fri").weekdays == {1, 2, 3, 4, 5}
    assert parse_cron("0 0 * * 7").weekdays == parse_cron("0 0 * * sun").weekdays == {0}
    assert parse_cron("0 0 * * 5-7").weekdays == {5, 6, 0}
    assert parse_cron("0 0 * * */2").weekdays == {0, 2, 4, 6}
    assert parse_cron("30 */6 * * *").hours == {0, 6, 12, 18} and parse_cron("30 */6 * * *").minutes == {30}
    assert parse_cron("10/20 * * * *").minutes == {10, 30, 50}
    for alias, expanded in {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *"}.items():
        a, b = parse_cron(alias), parse_cron(expanded)
        assert (a.minutes, a.hours, a.days, a.months, a.weekdays) == (b.minutes, b.hours, b.days, b.months, b.weekdays)
    assert parse_cron("@Daily").matches(datetime(2024, 2, 29, 0, 0)) and not parse_cron("@daily").matches(datetime(2024, 2, 29, 0, 1))
    assert parse_cron("0 2 * * *").matches(datetime(2024, 2, 29, 2, 0))


#: What croniter accepts but the agent cannot run (or reads differently from cron): refused,
#: and the message says why.
CRONITER_ONLY = [
    ("0 0 L * *", "Quartz extensions"),
    ("0 0 15W * *", "Quartz extensions"),
    ("0 0 * * 5#3", "Quartz extensions"),
    ("0 0 ? * *", "Quartz extensions"),
    ("0 0 * * L5", "Quartz extensions"),
    ("0 0 * * * 30", "expected 5 fields"),  # croniter: seconds last
    ("0 0 1 1 * 0 2030", "expected 5 fields"),  # and a year
    ("5-5 * * * *", "equal ends"),
    ("0 22-2 * * *", "runs backwards; write it as two ranges: 22-23,0-2"),
    ("0 0 * * fri-mon", "runs backwards; write it as two ranges: 5-6,0-1"),
    ("0 0 * * 7/2", "7 (Sunday) can only end a range"),
    ("0 0 30 2 *", "never runs"),
]


@pytest.mark.parametrize(("expr", "why"), CRONITER_ONLY, ids=[e for e, _ in CRONITER_ONLY])
def test_validation_refuses_what_only_croniter_runs(expr: str, why: str) -> None:
    assert croniter.is_valid(expr)  # the gap this closes
    problem = cron_problem(expr)
    assert problem is not None and why in problem and f"'{expr}'" in problem


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("0 0 0 * *", "day of month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day of week 8 is out of range 0-7"),
        ("*/0 * * * *", "step must be at least 1"),
        ("0 0 * * monday", "is not a number or a day name"),
        ("0 0 * foo *", "is not a number or a month name"),
        ("1,*,3 * * * *", "'*' cannot be part of a list"),
        ("@reboot", "unknown alias"),
        ("0 2 * *", "expected 5 fields"),
    ],
)
def test_invalid_expressions_say_why(expr: str, why: str) -> None:
    with pytest.raises(CronError, match=why.replace("*", r"\*")):
        parse_cron(expr)
    assert cron_problem(expr) is not None


def test_valid_schedules_pass_validation() -> None:
    for expr in ("0 2 * * *", "*/5 * * * *", "@daily", "0 9-17/2 * * mon-fri", "15 3 1,15 * *", "0 0 29 2 *"):
        assert cron_problem(expr) is None, expr


def test_a_project_file_with_a_quartz_schedule_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from projectdeployer import ProjectDeployer

    project = ProjectDeployer.create("cronp", path=tmp_path / "p.toml")
    with pytest.raises(ConfigError) as err:
        project.add_python_service("job", schedule="0 0 L * *")
    assert "services.job.schedule: '0 0 L * *' is not a valid cron schedule: day of month 'L'" in str(err.value)
    with pytest.raises(ConfigError, match="cannot be a scheduled job"):
        project.add_postgres("db", schedule="0 2 * * *")
