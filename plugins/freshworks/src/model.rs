//! The two apps and their entities: names, API paths and JSON keys.

use tandem_sdk::Error;

use crate::settings::Edition;

/// Which connector is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// Freshsales (Suite or Classic): contacts, and leads on Classic.
    Freshsales,
    /// Freshmarketer in the Freshworks bundle: contacts with marketing lists.
    Freshmarketer,
}

impl App {
    /// The plugin name (`freshsales`, `freshmarketer`).
    pub fn name(self) -> &'static str {
        match self {
            App::Freshsales => "freshsales",
            App::Freshmarketer => "freshmarketer",
        }
    }

    /// The app's name for humans.
    pub fn label(self) -> &'static str {
        match self {
            App::Freshsales => "Freshsales",
            App::Freshmarketer => "Freshmarketer",
        }
    }

    /// Whether the app's contacts have lists (containers).
    pub fn has_lists(self) -> bool {
        matches!(self, App::Freshmarketer)
    }

    /// The entity called `name`, if this app and edition serve it.
    pub fn entity(self, name: &str, edition: Edition) -> Result<Entity, Error> {
        match (self, name) {
            (_, "contacts") => Ok(Entity::Contacts),
            (App::Freshsales, "leads") if edition == Edition::Classic => Ok(Entity::Leads),
            (App::Freshsales, "leads") => Err(Error::invalid(
                "leads exist only on Freshsales Classic (freshsales.io); on Suite, leads are contacts in the lifecycle stage `Lead`: sync `contacts`",
            )),
            (app, other) => Err(Error::invalid(format!(
                "unknown entity `{other}`; {} serves {}",
                app.label(),
                match app {
                    App::Freshsales => "`contacts` and, on Classic, `leads`",
                    App::Freshmarketer => "`contacts`",
                }
            ))),
        }
    }
}

/// A Freshworks record type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// `contacts` (Suite, Classic, Freshmarketer).
    Contacts,
    /// `leads` (Classic only).
    Leads,
}

impl Entity {
    /// Contract and URL name (`contacts`, `leads`).
    pub fn plural(self) -> &'static str {
        match self {
            Entity::Contacts => "contacts",
            Entity::Leads => "leads",
        }
    }

    /// Singular JSON root key and search name (`contact`, `lead`).
    pub fn singular(self) -> &'static str {
        match self {
            Entity::Contacts => "contact",
            Entity::Leads => "lead",
        }
    }

    /// The system view holding every record.
    pub fn all_view(self) -> &'static str {
        match self {
            Entity::Contacts => "All Contacts",
            Entity::Leads => "All Leads",
        }
    }

    /// The `filtered_search` attribute of the email.
    pub fn email_attribute(self) -> &'static str {
        match self {
            Entity::Contacts => "contact_email.email",
            Entity::Leads => "lead_email.email",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_per_app_and_edition() {
        let cases = [
            (
                App::Freshsales,
                "contacts",
                Edition::Suite,
                Some(Entity::Contacts),
            ),
            (
                App::Freshsales,
                "leads",
                Edition::Classic,
                Some(Entity::Leads),
            ),
            (App::Freshsales, "leads", Edition::Suite, None),
            (App::Freshsales, "deals", Edition::Classic, None),
            (
                App::Freshmarketer,
                "contacts",
                Edition::Suite,
                Some(Entity::Contacts),
            ),
            (App::Freshmarketer, "leads", Edition::Classic, None),
        ];
        for (app, name, edition, expected) in cases {
            let got = app.entity(name, edition);
            match expected {
                Some(entity) => assert_eq!(got, Ok(entity)),
                None => assert!(
                    matches!(got, Err(Error::Invalid(_))),
                    "{app:?} {name} {edition:?}"
                ),
            }
        }
        assert!(
            App::Freshsales
                .entity("leads", Edition::Suite)
                .unwrap_err()
                .message()
                .contains("Classic")
        );
    }
}
