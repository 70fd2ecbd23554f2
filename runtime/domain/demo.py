"""The demo `eras` database: a deterministic SQLite file (or PostgreSQL schema) for a fictional consultancy.

Eras is a small consultancy with departments, employees, customers, projects,
booked time, invoices and invoice lines. `eras_rows` generates them from a seed
with `random.Random` only, so the same seed always gives the same rows;
`build_eras_database` writes them to a SQLite file and `load_eras_into_postgres`
into a PostgreSQL database, with the same schema and the very same rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import re
import sqlite3
import tempfile
from pathlib import Path
from urllib.parse import quote

import psycopg

ERAS_SCHEMA_VERSION = 1
"""Bumped whenever the schema or the generator changes what a seed produces."""

DEFAULT_SEED = 7

_SCHEMA = """
CREATE TABLE eras_meta (
    schema_version INTEGER NOT NULL,
    seed INTEGER NOT NULL
);
CREATE TABLE departments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    cost_center TEXT NOT NULL
);
CREATE TABLE employees (
    id INTEGER PRIMARY KEY,
    department_id INTEGER NOT NULL REFERENCES departments(id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hourly_rate REAL NOT NULL,
    hired_on TEXT NOT NULL
);
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    industry TEXT NOT NULL,
    city TEXT NOT NULL,
    country TEXT NOT NULL,
    created_on TEXT NOT NULL
);
CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'completed', 'on_hold')),
    budget REAL NOT NULL,
    started_on TEXT NOT NULL,
    lead_employee_id INTEGER NOT NULL REFERENCES employees(id)
);
CREATE TABLE time_entries (
    id INTEGER PRIMARY KEY,
    employee_id INTEGER NOT NULL REFERENCES employees(id),
    project_id INTEGER NOT NULL REFERENCES projects(id),
    work_date TEXT NOT NULL,
    hours REAL NOT NULL,
    billable INTEGER NOT NULL CHECK (billable IN (0, 1)),
    note TEXT
);
CREATE TABLE invoices (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    project_id INTEGER NOT NULL REFERENCES projects(id),
    issued_on TEXT NOT NULL,
    due_on TEXT NOT NULL,
    amount REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('paid', 'open', 'overdue'))
);
CREATE TABLE invoice_lines (
    id INTEGER PRIMARY KEY,
    invoice_id INTEGER NOT NULL REFERENCES invoices(id),
    description TEXT NOT NULL,
    quantity REAL NOT NULL,
    unit_price REAL NOT NULL
);
CREATE INDEX employees_department ON employees(department_id);
CREATE INDEX projects_customer ON projects(customer_id);
CREATE INDEX projects_lead ON projects(lead_employee_id);
CREATE INDEX time_entries_employee ON time_entries(employee_id);
CREATE INDEX time_entries_project ON time_entries(project_id);
CREATE INDEX invoices_customer ON invoices(customer_id);
CREATE INDEX invoices_project ON invoices(project_id);
CREATE INDEX invoice_lines_invoice ON invoice_lines(invoice_id);
"""

TABLES = (
    "departments",
    "employees",
    "customers",
    "projects",
    "time_entries",
    "invoices",
    "invoice_lines",
)
"""The domain tables, in the order they are filled (parents before children)."""

# The SQLite schema is valid PostgreSQL as it stands, but for REAL, which is a
# 4-byte float there and would round amounts: DOUBLE PRECISION matches SQLite's REAL.
_POSTGRES_SCHEMA = re.sub(r"\bREAL\b", "DOUBLE PRECISION", _SCHEMA)
_POSTGRES_DROP = f"DROP TABLE IF EXISTS {', '.join((*reversed(TABLES), 'eras_meta'))}"

# Counts of generated rows; time entries, invoices and lines are exact too.
_EMPLOYEES = 60
_CUSTOMERS = 120
_PROJECTS = 300
_TIME_ENTRIES = 6000
_INVOICES = 900

_FIRST = dt.date(2022, 1, 1)
_LAST = dt.date(2025, 12, 31)
_AS_OF = dt.date(2025, 12, 31)
"""The day the data is "as of": invoices due before it are paid or overdue."""

# name -> (cost center, [(role, min rate, max rate)])
_DEPARTMENTS: tuple[tuple[str, str, tuple[tuple[str, int, int], ...]], ...] = (
    (
        "Engineering",
        "CC-100",
        (("Software Engineer", 85, 120), ("Senior Engineer", 110, 150), ("Tech Lead", 135, 175)),
    ),
    (
        "Data & Analytics",
        "CC-200",
        (("Data Analyst", 80, 110), ("Data Engineer", 95, 135), ("Data Scientist", 110, 155)),
    ),
    ("Design", "CC-300", (("UX Designer", 80, 115), ("Product Designer", 90, 130))),
    (
        "Strategy",
        "CC-400",
        (("Consultant", 100, 140), ("Senior Consultant", 130, 180), ("Partner", 190, 260)),
    ),
    ("Project Management", "CC-500", (("Project Manager", 95, 135), ("Delivery Lead", 120, 160))),
    ("Finance & Operations", "CC-600", (("Accountant", 60, 85), ("Operations Manager", 70, 95))),
)
_DEPARTMENT_WEIGHTS = (18, 10, 8, 10, 8, 6)
_BILLING_DEPARTMENTS = 5  # Finance & Operations (the last one) does not lead projects

_FIRST_NAMES = (
    "Ada", "Alan", "Amara", "Anna", "Ben", "Carla", "Chen", "Clara", "Daniel", "Dara",
    "Elena", "Emil", "Farah", "Felix", "Grace", "Hannah", "Hugo", "Ines", "Ivan", "Jonas",
    "Julia", "Kai", "Karin", "Lars", "Lea", "Leon", "Lina", "Luca", "Maja", "Marco",
    "Mila", "Nadia", "Noah", "Omar", "Paula", "Priya", "Rafael", "Sara", "Tomas", "Yuki",
)  # fmt: skip
_LAST_NAMES = (
    "Almeida", "Becker", "Berg", "Costa", "Dahl", "Eriksen", "Fischer", "Garcia", "Hansen",
    "Ito", "Jensen", "Kowalski", "Keller", "Lindqvist", "Meyer", "Moreau", "Novak", "Okafor",
    "Petrov", "Quinn", "Rossi", "Santos", "Schmidt", "Silva", "Tanaka", "Varga", "Weber",
    "Wojcik", "Young", "Zimmermann",
)  # fmt: skip

_COMPANY_PREFIXES = (
    "Alder", "Apex", "Aurora", "Beacon", "Birch", "Blue Harbor", "Cedar", "Cobalt", "Copper",
    "Crescent", "Delta", "Ember", "Evergreen", "Falcon", "Fjord", "Granite", "Harbor", "Helix",
    "Horizon", "Iris", "Juniper", "Keystone", "Lumen", "Maple", "Meridian", "Nimbus", "North Star",
    "Oak", "Orbit", "Pioneer", "Quartz", "Redwood", "Sable", "Summit", "Tidal", "Vertex",
)  # fmt: skip
_COMPANY_SUFFIXES = {
    "Retail": ("Retail", "Stores", "Outfitters", "Market"),
    "Logistics": ("Logistics", "Freight", "Shipping", "Transport"),
    "Healthcare": ("Health", "Clinics", "Medical", "Care"),
    "Finance": ("Capital", "Bank", "Insurance", "Partners"),
    "Manufacturing": ("Industries", "Manufacturing", "Works", "Components"),
    "Energy": ("Energy", "Power", "Renewables", "Utilities"),
    "Media": ("Media", "Studios", "Publishing", "Broadcasting"),
    "Public Sector": ("Agency", "Authority", "Council", "Foundation"),
}
_INDUSTRIES = tuple(_COMPANY_SUFFIXES)

_CITIES = (
    ("Berlin", "Germany"), ("Munich", "Germany"), ("Hamburg", "Germany"),
    ("Amsterdam", "Netherlands"), ("Rotterdam", "Netherlands"), ("Vienna", "Austria"),
    ("Zurich", "Switzerland"), ("Copenhagen", "Denmark"), ("Stockholm", "Sweden"),
    ("Oslo", "Norway"), ("Paris", "France"), ("Lyon", "France"), ("Madrid", "Spain"),
    ("Barcelona", "Spain"), ("Lisbon", "Portugal"), ("Milan", "Italy"), ("Warsaw", "Poland"),
    ("Prague", "Czechia"), ("Dublin", "Ireland"), ("London", "United Kingdom"),
    ("Manchester", "United Kingdom"),
)  # fmt: skip

_PROJECT_KINDS = (
    "Data Platform", "Cloud Migration", "Customer Portal", "Analytics Dashboard", "ERP Rollout",
    "Mobile App", "Pricing Model", "Supply Chain Review", "Brand Refresh", "Security Audit",
    "CRM Integration", "Forecasting Pilot", "Process Redesign", "Website Relaunch",
    "Market Entry Study", "API Modernisation",
)  # fmt: skip
_PROJECT_PHASES = ("Phase 1", "Phase 2", "Pilot", "Rollout", "Discovery", "2.0")

_NOTES = (
    "workshop with client", "requirements review", "implementation", "code review",
    "data cleaning", "stakeholder interviews", "status meeting", "testing", "documentation",
    "deployment", "design iteration", "bug fixing", "planning", "report writing",
    "internal sync", "training session",
)  # fmt: skip
_LINE_ITEMS = (
    ("Consulting services", 8, 80),
    ("Engineering services", 8, 120),
    ("Design services", 4, 40),
    ("Workshop facilitation", 1, 4),
    ("Project management", 4, 30),
    ("Data analysis", 4, 60),
    ("Travel expenses", 1, 6),
    ("Software licences", 1, 20),
)
_HOURLY_ITEMS = frozenset(
    (
        "Consulting services",
        "Engineering services",
        "Design services",
        "Project management",
        "Data analysis",
    )
)
"""Line items billed per hour at a team member's rate; the rest have a fixed unit price."""


def _day(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    """A uniformly random day between start and end, inclusive."""
    return start + dt.timedelta(days=rng.randint(0, max(0, (end - start).days)))


def _weekday(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    """A random day between start and end, moved back to Friday if it falls on a weekend."""
    day = _day(rng, start, end)
    while day.weekday() >= 5 and day > start:
        day -= dt.timedelta(days=1)
    return day


def eras_rows(seed: int = DEFAULT_SEED) -> dict[str, list[tuple]]:
    """Every table's rows for a seed, in insertion order; the only source of randomness."""
    rng = random.Random(seed)

    departments = [(i, name, cc) for i, (name, cc, _roles) in enumerate(_DEPARTMENTS, start=1)]

    employees: list[tuple] = []
    seen: set[str] = set()
    billing_employees: list[int] = []
    employees_by_department: dict[int, list[int]] = {d[0]: [] for d in departments}
    for i in range(1, _EMPLOYEES + 1):
        # Every department gets at least one person; the rest follow the weights.
        if i <= len(_DEPARTMENTS):
            department_id = i
        else:
            department_id = rng.choices(range(1, len(_DEPARTMENTS) + 1), _DEPARTMENT_WEIGHTS)[0]
        while True:
            name = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
            if name not in seen:
                seen.add(name)
                break
        role, low, high = rng.choice(_DEPARTMENTS[department_id - 1][2])
        rate = float(rng.randrange(low, high + 1, 5))
        hired_on = _day(rng, _FIRST, dt.date(2024, 6, 30))
        employees.append((i, department_id, name, role, rate, hired_on.isoformat()))
        employees_by_department[department_id].append(i)
        if department_id <= _BILLING_DEPARTMENTS:
            billing_employees.append(i)
    employee_hired = {e[0]: dt.date.fromisoformat(e[5]) for e in employees}
    employee_rate = {e[0]: e[4] for e in employees}

    customers: list[tuple] = []
    seen = set()
    for i in range(1, _CUSTOMERS + 1):
        industry = rng.choice(_INDUSTRIES)
        while True:
            name = f"{rng.choice(_COMPANY_PREFIXES)} {rng.choice(_COMPANY_SUFFIXES[industry])}"
            if name not in seen:
                seen.add(name)
                break
        city, country = rng.choice(_CITIES)
        created_on = _day(rng, _FIRST, dt.date(2024, 12, 31))
        customers.append((i, name, industry, city, country, created_on.isoformat()))

    projects: list[tuple] = []
    for i in range(1, _PROJECTS + 1):
        customer = customers[rng.randrange(len(customers))]
        started_on = _weekday(rng, dt.date.fromisoformat(customer[5]), dt.date(2025, 10, 31))
        if started_on < dt.date(2024, 7, 1):
            status = rng.choices(("completed", "active", "on_hold"), (75, 15, 10))[0]
        else:
            status = rng.choices(("active", "completed", "on_hold"), (70, 15, 15))[0]
        budget = float(rng.randrange(15, 400) * 1000)
        lead = rng.choice(billing_employees)
        kind = rng.choice(_PROJECT_KINDS)
        name = f"{kind} {rng.choice(_PROJECT_PHASES)}" if rng.random() < 0.4 else kind
        projects.append((i, customer[0], name, status, budget, started_on.isoformat(), lead))

    # Each project has a small team drawn from the billing departments, lead included.
    teams = {
        p[0]: sorted({p[6], *rng.sample(billing_employees, rng.randint(2, 5))}) for p in projects
    }
    project_weights = [rng.randint(1, 10) for _ in projects]
    time_entries: list[tuple] = []
    for i in range(1, _TIME_ENTRIES + 1):
        project = rng.choices(projects, project_weights)[0]
        employee_id = rng.choice(teams[project[0]])
        start = max(dt.date.fromisoformat(project[5]), employee_hired[employee_id])
        end = _LAST if project[3] == "active" else min(_LAST, start + dt.timedelta(days=270))
        work_date = _weekday(rng, start, end)
        hours = rng.choice((0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 4.0, 6.0, 8.0))
        billable = 1 if rng.random() < 0.85 else 0
        note = rng.choice(_NOTES) if rng.random() < 0.8 else None
        time_entries.append(
            (i, employee_id, project[0], work_date.isoformat(), hours, billable, note)
        )

    invoices: list[tuple] = []
    invoice_lines: list[tuple] = []
    line_id = 0
    for i in range(1, _INVOICES + 1):
        project = rng.choices(projects, project_weights)[0]
        issued_on = _weekday(rng, dt.date.fromisoformat(project[5]), dt.date(2025, 12, 1))
        due_on = issued_on + dt.timedelta(days=rng.choice((14, 30, 30, 30)))
        if due_on >= _AS_OF:
            status = "open"
        else:
            status = rng.choices(("paid", "overdue", "open"), (88, 9, 3))[0]
        amount = 0.0
        for _ in range(rng.choice((1, 2, 2, 3, 3, 3, 4, 5))):
            line_id += 1
            description, low, high = rng.choice(_LINE_ITEMS)
            quantity = float(rng.randint(low, high))
            if description in _HOURLY_ITEMS:
                unit_price = employee_rate[rng.choice(teams[project[0]])]
            else:
                unit_price = float(rng.randrange(150, 2500, 50))
            amount += quantity * unit_price
            invoice_lines.append((line_id, i, description, quantity, unit_price))
        invoices.append(
            (
                i,
                project[1],
                project[0],
                issued_on.isoformat(),
                due_on.isoformat(),
                round(amount, 2),
                status,
            )
        )

    return {
        "departments": departments,
        "employees": employees,
        "customers": customers,
        "projects": projects,
        "time_entries": time_entries,
        "invoices": invoices,
        "invoice_lines": invoice_lines,
    }


def build_eras_database(path: Path, *, seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Generate the eras demo database at `path` and return its row count per table.

    The file is written next to `path` under a temporary name and renamed into
    place, so readers never see a half-built database. The parent directory must exist.
    """
    path = Path(path)
    data = eras_rows(seed)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.executescript(_SCHEMA)
            conn.execute("PRAGMA foreign_keys = ON")
            with conn:
                conn.execute(
                    "INSERT INTO eras_meta (schema_version, seed) VALUES (?, ?)",
                    (ERAS_SCHEMA_VERSION, seed),
                )
                for table in TABLES:
                    rows = data[table]
                    marks = ", ".join("?" * len(rows[0]))
                    conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            problems = conn.execute("PRAGMA foreign_key_check").fetchall()
            if problems:  # pragma: no cover - a generator bug, not a runtime condition
                raise RuntimeError(f"eras generator broke foreign keys: {problems[:5]}")
        finally:
            conn.close()
        tmp.chmod(0o644)  # mkstemp creates 0600; the demo file is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {table: len(data[table]) for table in TABLES}


def read_eras_meta(path: Path) -> tuple[int, int] | None:
    """The (schema_version, seed) stored in an eras file, or None if it is not one."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        with contextlib.suppress(sqlite3.Error):
            row = conn.execute("SELECT schema_version, seed FROM eras_meta").fetchone()
            if row is not None:
                return int(row[0]), int(row[1])
        return None
    finally:
        conn.close()


def load_eras_into_postgres(url: str, *, seed: int = DEFAULT_SEED) -> dict[str, int]:
    """Create the eras tables in the PostgreSQL database at `url`, replacing them, and fill them.

    The tables (with eras_meta) go to the `public` schema, dropped first, and
    hold exactly the rows of `build_eras_database` for the same seed. It all
    happens in one transaction: readers see the old tables or the new, never half.
    Returns the row count per table.
    """
    data = eras_rows(seed)
    # The connection's context manager commits on success and rolls back on error.
    with psycopg.connect(url, connect_timeout=10, application_name="agentsite-make-eras") as conn:
        conn.execute("SET LOCAL search_path TO public")
        # No CASCADE: if anything else depends on these tables, fail rather than drop it.
        conn.execute(_POSTGRES_DROP)
        conn.execute(_POSTGRES_SCHEMA)
        conn.execute(
            "INSERT INTO eras_meta (schema_version, seed) VALUES (%s, %s)",
            (ERAS_SCHEMA_VERSION, seed),
        )
        with conn.cursor() as cursor:
            for table in TABLES:
                with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                    for row in data[table]:
                        copy.write_row(row)
    return {table: len(data[table]) for table in TABLES}


def read_postgres_eras_state(url: str) -> tuple[tuple[int, int] | None, list[str]]:
    """The (schema_version, seed) of the eras data at `url` (or None), and which eras tables exist."""
    names = [*TABLES, "eras_meta"]
    with psycopg.connect(url, connect_timeout=10, application_name="agentsite-make-eras") as conn:
        conn.read_only = True
        present = sorted(
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_name = ANY(%s)",
                (names,),
            )
        )
        meta = None
        if "eras_meta" in present:
            row = conn.execute("SELECT schema_version, seed FROM public.eras_meta").fetchone()
            if row is not None:
                meta = (int(row[0]), int(row[1]))
        conn.rollback()
    return meta, present
