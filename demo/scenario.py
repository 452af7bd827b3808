"""The demo tenant's configuration: sizes, rates and how many of each failure to inject.

Everything the simulator does is derived from a :class:`Scenario` and its seeded random generator,
so the same scenario (seed, sizes, end time) always writes byte-identical files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

from ingest.errors import UsageError

# Documented bounds of the initial cycle (how-long.md §3): minutes per object in scope.
DOCS_MIN_MINUTES_PER_OBJECT: Final = 0.01
DOCS_MAX_MINUTES_PER_OBJECT: Final = 0.08

MIN_USERS: Final = 100
MAX_USERS: Final = 1_000_000

TENANT_NAME: Final = "Contoso (demo)"
DOMAIN: Final = "contoso.example"
APP_NAME: Final = "TheOrgWiki"
WIKI_HOST: Final = "contoso-demo.theorgwiki.com"
SCIM_BASE: Final = "/api/v2/scim/v2"


@dataclass(frozen=True)
class Scenario:
    """What to simulate; every count and rate the ground truth is checked against."""

    users: int = 2000
    groups: int | None = None  # default: derived from users (see :attr:`group_count`)
    seed: int = 7
    days: int = 7
    end: str = "2026-11-20T10:00:00Z"  # data window ends here (ISO, UTC, whole hour)
    quarantine: bool = False
    # Plant the conditions `provlens alert` reports (demo.planted); `provlens demo --healthy`
    # leaves them out.
    planted: bool = False
    # Throughput of the simulated provisioning engine (how-long.md: 0.01-0.08 min/object).
    minutes_per_object: float = 0.03
    cycle_interval_minutes: int = 40
    # Injected failures (numbers of distinct objects; see :meth:`failure_counts`).
    conflict_fraction: float = 0.002
    mandatory_missing_fraction: float = 0.002
    throttled_fraction: float = 0.004
    server_error_fraction: float = 0.002
    # Share of the persistent failures an admin fixes during the window.
    fixed_fraction: float = 0.5
    # Mismatches between the two sides.
    wiki_missing: int = 1  # Entra says created; the wiki never received anything
    wiki_orphans: int = 1  # the wiki has a user Entra does not manage
    # Daily change rates, as fractions of the user count.
    joiners_per_day: float = 0.002
    movers_per_day: float = 0.004
    unassigned_per_day: float = 0.001
    deleted_per_day: float = 0.0005
    noise_skips_per_day: float = 0.01
    noise_noop_updates_per_day: float = 0.008
    transient_failure_rate: float = 0.02  # incremental exports answered 429/500

    def __post_init__(self) -> None:
        if not MIN_USERS <= self.users <= MAX_USERS:
            raise UsageError(f"--users must be between {MIN_USERS} and {MAX_USERS}")
        if self.groups is not None and not 5 <= self.groups <= 10_000:
            raise UsageError("--groups must be between 5 and 10000")
        if not 1 <= self.days <= 30:
            raise UsageError("--days must be between 1 and 30 (Entra keeps 30 days of logs)")
        # The initial cycle also evaluates out-of-scope objects (~1.25x those in scope), so the
        # configured rate stays below 0.064 to keep its length within the documented 0.08.
        if not DOCS_MIN_MINUTES_PER_OBJECT <= self.minutes_per_object <= 0.06:
            raise UsageError("minutes_per_object must lie within 0.01-0.06")
        initial = (self.users + self.group_count) * self.minutes_per_object
        if initial + 60 > self.days * 24 * 60:
            raise UsageError(
                f"the initial cycle of {self.users} users takes about {initial / 60:.0f} hours, "
                f"longer than --days {self.days}; raise --days or lower --users"
            )

    @property
    def objects_per_min(self) -> float:
        """Configured throughput of the initial cycle (objects per minute)."""
        return 1.0 / self.minutes_per_object

    @property
    def group_count(self) -> int:
        """Number of groups in the tenant (assigned, default-access and nested)."""
        if self.groups is not None:
            return self.groups
        return max(8, min(400, self.users // 400))

    def failure_counts(self) -> dict[str, int]:
        """Return how many distinct users get each injected failure."""

        def n(frac: float, floor: int) -> int:
            return max(floor, round(self.users * frac))

        return {
            "conflict": n(self.conflict_fraction, 2),
            "mandatory_missing": n(self.mandatory_missing_fraction, 2),
            "throttled": n(self.throttled_fraction, 3),
            "server_error": n(self.server_error_fraction, 2),
        }

    def to_json(self) -> dict[str, Any]:
        """Return the scenario as a JSON-ready dict (for scenario.json)."""
        out = asdict(self)
        out["objects_per_min"] = self.objects_per_min
        out["group_count"] = self.group_count
        out["failure_counts"] = self.failure_counts()
        return out


GIVEN_NAMES: Final = [
    "Aaliyah",
    "Aaron",
    "Abigail",
    "Adam",
    "Adrian",
    "Aisha",
    "Alan",
    "Albert",
    "Alejandro",
    "Alex",
    "Alice",
    "Amara",
    "Amelia",
    "Amir",
    "Ana",
    "Andrea",
    "Andrew",
    "Angela",
    "Anna",
    "Anthony",
    "Arjun",
    "Astrid",
    "Ben",
    "Beatriz",
    "Benjamin",
    "Bianca",
    "Brandon",
    "Carlos",
    "Caroline",
    "Catherine",
    "Charles",
    "Charlotte",
    "Chen",
    "Chloe",
    "Christopher",
    "Claire",
    "Daniel",
    "David",
    "Deborah",
    "Diego",
    "Dmitri",
    "Elena",
    "Elijah",
    "Elizabeth",
    "Emily",
    "Emma",
    "Erik",
    "Ethan",
    "Eva",
    "Fatima",
    "Felix",
    "Fiona",
    "Francesca",
    "Gabriel",
    "Grace",
    "Hannah",
    "Harper",
    "Hassan",
    "Henry",
    "Hiroshi",
    "Ian",
    "Ingrid",
    "Isaac",
    "Isabella",
    "Ivan",
    "Jack",
    "Jacob",
    "James",
    "Jasmine",
    "Javier",
    "Jennifer",
    "Jessica",
    "Joanna",
    "John",
    "Jonas",
    "Jose",
    "Joseph",
    "Julia",
    "Kai",
    "Karen",
    "Katarina",
    "Kevin",
    "Kim",
    "Laura",
    "Leah",
    "Leo",
    "Liam",
    "Lily",
    "Lucas",
    "Lucia",
    "Luis",
    "Maria",
    "Mark",
    "Martin",
    "Maya",
    "Mei",
    "Mia",
    "Michael",
    "Miguel",
    "Mohammed",
    "Nadia",
    "Natalie",
    "Nathan",
    "Nina",
    "Noah",
    "Nora",
    "Olivia",
    "Omar",
    "Oscar",
    "Patricia",
    "Paul",
    "Pedro",
    "Priya",
    "Rachel",
    "Rafael",
    "Rahul",
    "Rebecca",
    "Ricardo",
    "Robert",
    "Rosa",
    "Ryan",
    "Sakura",
    "Samuel",
    "Sara",
    "Sebastian",
    "Sofia",
    "Sophie",
    "Stefan",
    "Susan",
    "Thomas",
    "Tomas",
    "Valentina",
    "Victor",
    "Wei",
    "William",
    "Yara",
    "Yusuf",
    "Zoe",
]

FAMILY_NAMES: Final = [
    "Abbott",
    "Adams",
    "Ahmed",
    "Alvarez",
    "Andersen",
    "Bailey",
    "Baker",
    "Barnes",
    "Becker",
    "Bell",
    "Bennett",
    "Berg",
    "Brooks",
    "Brown",
    "Campbell",
    "Carter",
    "Castro",
    "Chen",
    "Clark",
    "Collins",
    "Cook",
    "Cooper",
    "Costa",
    "Cruz",
    "Davies",
    "Diaz",
    "Dubois",
    "Edwards",
    "Evans",
    "Fischer",
    "Fisher",
    "Flores",
    "Foster",
    "Garcia",
    "Gomez",
    "Gonzalez",
    "Gray",
    "Green",
    "Gupta",
    "Hall",
    "Hansen",
    "Harris",
    "Hayes",
    "Hernandez",
    "Hill",
    "Hoffmann",
    "Hughes",
    "Ito",
    "Jackson",
    "Jansen",
    "Jensen",
    "Johnson",
    "Jones",
    "Kaur",
    "Kelly",
    "Khan",
    "Kim",
    "King",
    "Kowalski",
    "Kumar",
    "Larsen",
    "Lee",
    "Lewis",
    "Lopez",
    "Martin",
    "Martinez",
    "Meyer",
    "Miller",
    "Mitchell",
    "Moore",
    "Morales",
    "Morgan",
    "Muller",
    "Murphy",
    "Nakamura",
    "Nguyen",
    "Nielsen",
    "Novak",
    "Okafor",
    "Olsen",
    "Ortiz",
    "Park",
    "Patel",
    "Perez",
    "Peterson",
    "Petrov",
    "Phillips",
    "Popescu",
    "Price",
    "Ramirez",
    "Reed",
    "Reyes",
    "Richter",
    "Rivera",
    "Roberts",
    "Robinson",
    "Rodriguez",
    "Rossi",
    "Russo",
    "Sanchez",
    "Santos",
    "Sato",
    "Schmidt",
    "Schneider",
    "Scott",
    "Shah",
    "Silva",
    "Singh",
    "Smith",
    "Sorensen",
    "Stewart",
    "Suzuki",
    "Tanaka",
    "Taylor",
    "Thomas",
    "Thompson",
    "Torres",
    "Turner",
    "Walker",
    "Wang",
    "Ward",
    "Watson",
    "Weber",
    "White",
    "Williams",
    "Wilson",
    "Wong",
    "Wright",
    "Yamamoto",
    "Young",
    "Zhang",
]

DEPARTMENTS: Final = (
    "Engineering",
    "Sales",
    "Marketing",
    "Finance",
    "Human Resources",
    "Customer Support",
    "Legal",
    "Operations",
    "Product",
    "Research",
)
CONTRACTORS: Final = "Contractors"  # excluded by the scoping filter

JOB_TITLES: Final = {
    "Engineering": ("Software Engineer", "Senior Software Engineer", "Engineering Manager", "SRE"),
    "Sales": ("Account Executive", "Sales Manager", "Sales Engineer"),
    "Marketing": ("Marketing Specialist", "Content Strategist", "Marketing Manager"),
    "Finance": ("Accountant", "Financial Analyst", "Controller"),
    "Human Resources": ("HR Business Partner", "Recruiter", "HR Manager"),
    "Customer Support": ("Support Engineer", "Support Lead", "Customer Success Manager"),
    "Legal": ("Counsel", "Paralegal"),
    "Operations": ("Operations Analyst", "Facilities Coordinator", "Operations Manager"),
    "Product": ("Product Manager", "Product Designer", "UX Researcher"),
    "Research": ("Research Scientist", "Data Scientist"),
    CONTRACTORS: ("Contractor",),
}

# Display names that exercise output escaping (HTML/Markdown) and formula neutralisation.
TRICKY_USERS: Final = (
    ("Mallory", "Markup", "Mallory <img src=x onerror=alert(1)> **bold** Markup"),
    ("Eve", "Formula", '=HYPERLINK("https://example.com","Eve Formula")'),
)
