//! Deterministic seed data shared by every simulated account.
//!
//! There is one **population** of people per seed: [`person`]`(seed, i)` depends only on
//! `(seed, i)`, so [`people`]`(seed, n)` is a prefix of `people(seed, n + k)`. Each account takes
//! its records from that population with [`account_records`]: about 70 % of the people are picked
//! per account (so two accounts of similar size share roughly half of their people), and each
//! pick gets per-account variations:
//! * the email in a different letter case (never in the Suite Freshsales account, which is the
//!   reference copy), or no email at all;
//! * a differing job title or phone number;
//! * a consent state: Freshsales DND, Freshmarketer unsubscribed / bounced / spam / not
//!   subscribed;
//! * list (or contact-group) memberships, custom-field values, an owner and timestamps;
//! * now and then a **duplicate** record of the same person in the same account.
//!
//! Emails use reserved `.example` domains and phones the fictional 555-01xx / Ofcom drama
//! ranges, so nothing here reaches a real person. The Google simulator projects the same
//! records onto People resources with [`account_records`]`(seed, AccountKind::GooglePeople, n)`.

use rand::Rng;
use rand::seq::IndexedRandom;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::Serialize;

use crate::AccountKind;

/// A company a person works for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Company {
    /// Display name, e.g. "Northwind Traders".
    pub name: String,
    /// Web/email domain, e.g. `northwind.example`.
    pub domain: String,
    /// Industry label.
    pub industry: String,
}

/// A date without time (birthdays, renewal dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SimpleDate {
    /// Full year.
    pub year: i32,
    /// 1–12.
    pub month: u8,
    /// 1–28 (kept valid for every month).
    pub day: u8,
}

/// One person of the population (account-independent facts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    /// Index in the population; stable for a seed.
    pub index: usize,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Work email, lower case; unique within the population.
    pub email: String,
    /// A second, personal address for some people.
    pub secondary_email: Option<String>,
    /// Office phone.
    pub work_phone: Option<String>,
    /// Mobile phone.
    pub mobile_phone: Option<String>,
    /// Employer.
    pub company: Company,
    /// Job title.
    pub job_title: String,
    /// City.
    pub city: String,
    /// State / region, where the country uses one.
    pub state: Option<String>,
    /// Country name.
    pub country: String,
    /// Birthday, for some people.
    pub birthday: Option<SimpleDate>,
}

/// Marketing consent of one record in one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// Subscribed to marketing email.
    Subscribed,
    /// Never subscribed.
    NotSubscribed,
    /// Unsubscribed (Freshmarketer opt-out).
    Unsubscribed,
    /// Reported as spam.
    ReportedSpam,
    /// Email bounced.
    Bounced,
}

impl Consent {
    /// Freshworks `subscription_status` code: 0 Unsubscribed, 1 Subscribed, 2 Not subscribed,
    /// 3 Reported as spam, 4 Bounced.
    pub fn subscription_status(self) -> u8 {
        match self {
            Consent::Unsubscribed => 0,
            Consent::Subscribed => 1,
            Consent::NotSubscribed => 2,
            Consent::ReportedSpam => 3,
            Consent::Bounced => 4,
        }
    }
}

/// Custom-field values of one record (the Freshworks accounts expose them as `cf_*` fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomValues {
    /// One of [`PLANS`].
    pub plan: Option<String>,
    /// A subset of [`INTERESTS`], in that order.
    pub interests: Vec<String>,
    /// Contract renewal date.
    pub renewal_date: Option<SimpleDate>,
    /// Licensed seats.
    pub seats: Option<u32>,
    /// Whether the customer is active.
    pub is_active: bool,
    /// Sales region (free text: EMEA, AMER, APAC).
    pub region: Option<String>,
}

/// One seeded record of one account: a person as that account knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeedRecord {
    /// The person with this account's variations applied (email case, job title, phone).
    pub person: Person,
    /// The email this account stores (`None`: the record has no email). May differ in case
    /// from `person.email`.
    pub email: Option<String>,
    /// Set on the second record of a within-account duplicate: the position (in the returned
    /// vector) of the record it duplicates.
    pub duplicate_of: Option<usize>,
    /// Freshsales "do not disturb".
    pub do_not_disturb: bool,
    /// Marketing subscription state.
    pub consent: Consent,
    /// Indices into [`LIST_NAMES`] (lists in Freshworks, contact groups in Google).
    pub lists: Vec<usize>,
    /// Custom-field values.
    pub custom: CustomValues,
    /// Index into [`OWNERS`].
    pub owner: usize,
    /// Lead score 0–100.
    pub lead_score: u32,
    /// Seconds before the sandbox start at which the record was created.
    pub created_secs_ago: i64,
    /// Seconds before the sandbox start at which it was last updated (≤ `created_secs_ago`).
    pub updated_secs_ago: i64,
}

/// Marketing list / contact group names.
pub const LIST_NAMES: &[&str] = &[
    "Newsletter",
    "Webinar attendees",
    "Customers",
    "Trial users",
    "Event 2024",
];

/// Plan choices of the `plan` custom field.
pub const PLANS: &[&str] = &["Free", "Pro", "Enterprise"];

/// Choices of the multi-select `interests` custom field.
pub const INTERESTS: &[&str] = &["Newsletter", "Webinars", "Product updates", "Events"];

/// Sales owners: (display name, email).
pub const OWNERS: &[(&str, &str)] = &[
    ("Ann Owner", "ann.owner@tandem-sandbox.example"),
    ("Bruno Keller", "bruno.keller@tandem-sandbox.example"),
    ("Chidi Okafor", "chidi.okafor@tandem-sandbox.example"),
];

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Alan",
    "Grace",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
    "Tim",
    "Hedy",
    "Donald",
    "Katherine",
    "John",
    "Sophie",
    "Lukas",
    "Amara",
    "Kenji",
    "Priya",
    "Mateo",
    "Ingrid",
    "Omar",
    "Chloé",
    "Björn",
    "Aisha",
    "Diego",
    "Mei",
    "Olga",
    "Tomás",
    "Fatima",
    "Henrik",
    "Yuki",
    "Zanele",
    "Pierre",
    "Anika",
    "Rafael",
    "Noor",
    "Elena",
    "Kwame",
    "Sven",
    "Leila",
    "Marco",
    "Hana",
    "Jonas",
    "Nadia",
    "Pablo",
    "Sara",
    "Wei",
];

const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Hamilton",
    "Ritchie",
    "Liskov",
    "Thompson",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners-Lee",
    "Lamarr",
    "Knuth",
    "Johnson",
    "McCarthy",
    "Müller",
    "Schmidt",
    "Okonkwo",
    "Tanaka",
    "Sharma",
    "García",
    "Larsen",
    "Haddad",
    "Dubois",
    "Andersson",
    "Bello",
    "Fernández",
    "Chen",
    "Ivanova",
    "O'Brien",
    "Rossi",
    "Nakamura",
    "Dlamini",
    "Moreau",
    "Kowalski",
    "Silva",
    "Khan",
    "Petrov",
    "Mensah",
    "Nilsson",
    "Farouk",
    "Romano",
    "Sato",
    "Weber",
    "Novak",
    "Ortiz",
    "Lindqvist",
    "Wang",
    "de Vries",
];

const COMPANIES: &[(&str, &str, &str)] = &[
    ("Northwind Traders", "northwind.example", "Retail"),
    ("Contoso Pharma", "contoso-pharma.example", "Healthcare"),
    ("Fabrikam Robotics", "fabrikam.example", "Manufacturing"),
    ("Tailspin Toys", "tailspin.example", "Retail"),
    ("Wingtip Logistics", "wingtip.example", "Transportation"),
    ("Adatum Analytics", "adatum.example", "Software"),
    ("Litware Labs", "litware.example", "Software"),
    ("Proseware Media", "proseware.example", "Media"),
    ("Woodgrove Bank", "woodgrove.example", "Finance"),
    ("Lucerne Publishing", "lucerne.example", "Media"),
    ("Alpine Ski House", "alpineski.example", "Hospitality"),
    ("Coho Winery", "cohowinery.example", "Food & Beverage"),
    (
        "Blue Yonder Airlines",
        "blueyonder.example",
        "Transportation",
    ),
    ("Humongous Insurance", "humongous.example", "Finance"),
    ("Trey Research", "treyresearch.example", "Consulting"),
    ("Margie's Travel", "margiestravel.example", "Hospitality"),
    ("Graphic Design Institute", "gdi.example", "Education"),
    ("Relecloud", "relecloud.example", "Software"),
    ("Southridge Video", "southridge.example", "Media"),
    ("Fourth Coffee", "fourthcoffee.example", "Food & Beverage"),
];

const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "Head of Marketing",
    "Marketing Manager",
    "Sales Director",
    "Account Executive",
    "Software Engineer",
    "Product Manager",
    "Operations Lead",
    "Customer Success Manager",
    "Procurement Officer",
    "Data Analyst",
    "Office Manager",
    "CFO",
    "Growth Hacker",
];

/// (city, state, country, phone style)
const PLACES: &[(&str, Option<&str>, &str, Phone)] = &[
    ("San Diego", Some("CA"), "USA", Phone::Us),
    ("Austin", Some("TX"), "USA", Phone::Us),
    ("Chicago", Some("IL"), "USA", Phone::Us),
    ("Boston", Some("MA"), "USA", Phone::Us),
    ("Toronto", Some("ON"), "Canada", Phone::Us),
    ("London", None, "United Kingdom", Phone::Uk),
    ("Manchester", None, "United Kingdom", Phone::Uk),
    ("Berlin", None, "Germany", Phone::De),
    ("Munich", None, "Germany", Phone::De),
    ("Paris", None, "France", Phone::Fr),
    ("Bengaluru", Some("KA"), "India", Phone::In),
    ("Chennai", Some("TN"), "India", Phone::In),
    ("Sydney", Some("NSW"), "Australia", Phone::Au),
];

#[derive(Debug, Clone, Copy)]
enum Phone {
    Us,
    Uk,
    De,
    Fr,
    In,
    Au,
}

const PERSONAL_DOMAINS: &[&str] = &["mail.example", "inbox.example", "post.example"];

/// SplitMix64 finaliser: spreads a seed and a salt into an independent 64-bit seed.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rng_for(seed: u64, salt: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed ^ mix(salt)));
    rng.set_stream(stream);
    rng
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    items.choose(rng).unwrap_or(&items[0])
}

fn ascii_fold(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'á' | 'à' | 'â' | 'ä' => Some('a'),
            'é' | 'è' | 'ê' | 'ë' => Some('e'),
            'í' | 'ï' => Some('i'),
            'ó' | 'ö' | 'ô' => Some('o'),
            'ú' | 'ü' => Some('u'),
            'ñ' => Some('n'),
            'ç' => Some('c'),
            ' ' | '\'' | '-' => None,
            c => Some(c.to_ascii_lowercase()),
        })
        .collect()
}

fn phone(rng: &mut ChaCha8Rng, style: Phone) -> String {
    let n: u32 = rng.random_range(0..100);
    match style {
        Phone::Us => {
            let area = pick(rng, &[212u16, 312, 415, 512, 617, 619, 416]);
            format!("+1 {area}-555-01{n:02}")
        }
        Phone::Uk => format!("+44 20 7946 0{:03}", rng.random_range(0..1000u32)),
        Phone::De => format!("+49 30 2345 6{n:02}"),
        Phone::Fr => format!("+33 1 99 00 {n:02} {:02}", rng.random_range(0..100u32)),
        Phone::In => format!("+91 80 5555 {:04}", rng.random_range(0..10000u32)),
        Phone::Au => format!("+61 2 5550 {:04}", rng.random_range(0..10000u32)),
    }
}

/// Person `index` of the population of `seed`.
pub fn person(seed: u64, index: usize) -> Person {
    let mut rng = rng_for(seed, 0x5045_4f50_4c45, index as u64);
    let first = *pick(&mut rng, FIRST_NAMES);
    let last = *pick(&mut rng, LAST_NAMES);
    let &(cname, cdomain, industry) = pick(&mut rng, COMPANIES);
    let &(city, state, country, style) = pick(&mut rng, PLACES);
    let (f, l) = (ascii_fold(first), ascii_fold(last));
    // The index suffix keeps emails unique across the population.
    let local = match rng.random_range(0..4u8) {
        0 => format!("{f}.{l}{index}"),
        1 => format!("{}{l}{index}", &f[..1]),
        2 => format!("{f}{index}"),
        _ => format!("{f}_{l}.{index}"),
    };
    let email = format!("{local}@{cdomain}");
    let secondary_email = rng
        .random_bool(0.3)
        .then(|| format!("{f}.{l}.{index}@{}", pick(&mut rng, PERSONAL_DOMAINS)));
    let work_phone = rng.random_bool(0.7).then(|| phone(&mut rng, style));
    let mobile_phone = rng.random_bool(0.6).then(|| phone(&mut rng, style));
    let birthday = rng.random_bool(0.4).then(|| SimpleDate {
        year: rng.random_range(1955..2003),
        month: rng.random_range(1..=12),
        day: rng.random_range(1..=28),
    });
    Person {
        index,
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        email,
        secondary_email,
        work_phone,
        mobile_phone,
        company: Company {
            name: cname.to_owned(),
            domain: cdomain.to_owned(),
            industry: industry.to_owned(),
        },
        job_title: (*pick(&mut rng, TITLES)).to_owned(),
        city: city.to_owned(),
        state: state.map(str::to_owned),
        country: country.to_owned(),
        birthday,
    }
}

/// The first `n` people of the population of `seed`.
pub fn people(seed: u64, n: usize) -> Vec<Person> {
    (0..n).map(|i| person(seed, i)).collect()
}

fn salt(kind: AccountKind) -> u64 {
    match kind {
        AccountKind::FreshsalesSuite => 1,
        AccountKind::FreshsalesClassic => 2,
        AccountKind::Freshmarketer => 3,
        AccountKind::GooglePeople => 4,
    }
}

/// Change the letter case of an email the way people and imports do.
fn recase(email: &str, rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..3u8) {
        0 => email.to_uppercase(),
        1 => {
            // Capitalise each dot-separated word of the local part.
            let (local, domain) = email.split_once('@').unwrap_or((email, ""));
            let local: Vec<String> = local
                .split('.')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|h| h.to_uppercase().chain(c).collect())
                        .unwrap_or_default()
                })
                .collect();
            format!("{}@{domain}", local.join("."))
        }
        _ => {
            let (local, domain) = email.split_once('@').unwrap_or((email, ""));
            format!("{local}@{}", domain.to_uppercase())
        }
    }
}

fn consent_for(kind: AccountKind, rng: &mut ChaCha8Rng) -> (bool, Consent) {
    let r: f64 = rng.random();
    match kind {
        AccountKind::Freshmarketer => {
            let c = match r {
                r if r < 0.08 => Consent::Unsubscribed,
                r if r < 0.11 => Consent::Bounced,
                r if r < 0.12 => Consent::ReportedSpam,
                r if r < 0.17 => Consent::NotSubscribed,
                _ => Consent::Subscribed,
            };
            // A few Freshmarketer contacts also carry DND (synced over from Freshsales).
            (rng.random_bool(0.03), c)
        }
        AccountKind::FreshsalesSuite | AccountKind::FreshsalesClassic => {
            let dnd = r < 0.08;
            let c = match rng.random::<f64>() {
                r if r < 0.03 => Consent::Unsubscribed,
                r if r < 0.05 => Consent::Bounced,
                _ => Consent::Subscribed,
            };
            (dnd, c)
        }
        AccountKind::GooglePeople => (false, Consent::Subscribed),
    }
}

fn custom_values(rng: &mut ChaCha8Rng) -> CustomValues {
    let interests = INTERESTS
        .iter()
        .filter(|_| rng.random_bool(0.35))
        .map(|s| (*s).to_owned())
        .collect();
    CustomValues {
        plan: rng.random_bool(0.8).then(|| (*pick(rng, PLANS)).to_owned()),
        interests,
        renewal_date: rng.random_bool(0.5).then(|| SimpleDate {
            year: rng.random_range(2024..2028),
            month: rng.random_range(1..=12),
            day: rng.random_range(1..=28),
        }),
        seats: rng.random_bool(0.6).then(|| rng.random_range(1..500)),
        is_active: rng.random_bool(0.7),
        region: rng
            .random_bool(0.7)
            .then(|| (*pick(rng, &["EMEA", "AMER", "APAC"])).to_owned()),
    }
}

/// `n` records for an account of `kind`: people picked from the shared population with this
/// account's variations (see the module doc). Deterministic in `(seed, kind, n)`, and the first
/// records of a larger `n` are the same as for a smaller one.
pub fn account_records(seed: u64, kind: AccountKind, n: usize) -> Vec<SeedRecord> {
    let mut out: Vec<SeedRecord> = Vec::with_capacity(n);
    let mut index = 0usize;
    while out.len() < n {
        let mut rng = rng_for(seed, 0x4143_4354 ^ salt(kind), index as u64);
        let picked = rng.random_bool(0.7);
        let i = index;
        index += 1;
        if !picked {
            continue;
        }
        let mut p = person(seed, i);
        if rng.random_bool(0.1) {
            p.job_title = (*pick(&mut rng, TITLES)).to_owned();
        }
        if rng.random_bool(0.05) {
            p.mobile_phone = Some(phone(&mut rng, Phone::Us));
        }
        let email = if rng.random_bool(0.05) {
            None
        } else if kind != AccountKind::FreshsalesSuite && rng.random_bool(0.12) {
            Some(recase(&p.email, &mut rng))
        } else {
            Some(p.email.clone())
        };
        let (do_not_disturb, consent) = consent_for(kind, &mut rng);
        let lists = (0..LIST_NAMES.len())
            .filter(|_| rng.random_bool(0.3))
            .collect();
        let created_secs_ago = rng.random_range(86_400..(2 * 365 * 86_400));
        let updated_secs_ago = rng.random_range(60..=created_secs_ago);
        let rec = SeedRecord {
            email,
            duplicate_of: None,
            do_not_disturb,
            consent,
            lists,
            custom: custom_values(&mut rng),
            owner: rng.random_range(0..OWNERS.len()),
            lead_score: rng.random_range(0..=100),
            created_secs_ago,
            updated_secs_ago,
            person: p,
        };
        let dup = rng.random_bool(0.03) && rec.email.is_some();
        out.push(rec);
        if dup && out.len() < n {
            // A later, sparser copy of the same person (e.g. a second import).
            let orig = out.len() - 1;
            let mut d = out[orig].clone();
            d.duplicate_of = Some(orig);
            d.person.job_title.clear();
            d.person.work_phone = None;
            d.lists.clear();
            if rng.random_bool(0.5) {
                d.email = d.email.map(|e| e.to_lowercase());
            }
            d.created_secs_ago = rng.random_range(60..=d.created_secs_ago);
            d.updated_secs_ago = rng.random_range(30..=d.created_secs_ago);
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn population_is_deterministic_and_prefix_stable() {
        assert_eq!(people(7, 50), people(7, 50));
        assert_eq!(people(7, 80)[..50], people(7, 50)[..]);
        assert_ne!(people(7, 20), people(8, 20));
        let emails: HashSet<_> = people(7, 2000).into_iter().map(|p| p.email).collect();
        assert_eq!(emails.len(), 2000, "population emails are unique");
    }

    #[test]
    fn accounts_overlap_and_vary() {
        let n = 400;
        let fs = account_records(42, AccountKind::FreshsalesSuite, n);
        let fm = account_records(42, AccountKind::Freshmarketer, n);
        assert_eq!(fs.len(), n);
        assert_eq!(fm.len(), n);
        assert_eq!(fs, account_records(42, AccountKind::FreshsalesSuite, n));
        assert_eq!(
            fs[..100],
            account_records(42, AccountKind::FreshsalesSuite, 100)[..]
        );
        let fs_people: HashSet<_> = fs.iter().map(|r| r.person.index).collect();
        let fm_people: HashSet<_> = fm.iter().map(|r| r.person.index).collect();
        let shared = fs_people.intersection(&fm_people).count();
        assert!(shared > n / 3 && shared < n, "overlap {shared}");
        // Variations exist.
        assert!(
            fm.iter()
                .any(|r| r.email.as_ref().is_some_and(|e| *e != r.person.email))
        );
        assert!(
            fs.iter()
                .all(|r| r.email.as_ref().is_none_or(|e| *e == r.person.email))
        );
        assert!(fs.iter().any(|r| r.email.is_none()));
        assert!(fs.iter().any(|r| r.duplicate_of.is_some()));
        assert!(fs.iter().any(|r| r.do_not_disturb));
        for c in [Consent::Unsubscribed, Consent::Bounced, Consent::Subscribed] {
            assert!(fm.iter().any(|r| r.consent == c), "{c:?}");
        }
        assert!(fm.iter().any(|r| !r.lists.is_empty()));
        for r in &fs {
            assert!(r.updated_secs_ago <= r.created_secs_ago);
            if let Some(d) = r.duplicate_of {
                assert_eq!(fs[d].person.index, r.person.index);
            }
        }
    }
}
