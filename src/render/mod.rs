//! What people read: pages and texts in German or English, rendered from the service layer's
//! answers. No rule lives here; only words and layout.

pub mod report;

use std::str::FromStr;

use maud::{Markup, PreEscaped, html};

/// A page's head: UTF-8, the device's width, no referrer, its title and its style inline
/// (nothing is loaded from anywhere).
pub(crate) fn head(title: &str, styles: &[&str]) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) }
            style { @for style in styles { (PreEscaped(style)) } }
        }
    }
}

/// The language of a page or text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    De,
    #[default]
    En,
}

impl Lang {
    /// The language tag (`de`, `en`).
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }

    /// German or English after an `Accept-Language` value (highest weight first); English
    /// otherwise.
    pub fn from_accept_language(accept: &str) -> Lang {
        let mut ranges: Vec<(f32, &str)> = accept
            .split(',')
            .filter_map(|part| {
                let mut pieces = part.split(';');
                let tag = pieces.next()?.trim();
                let weight = pieces
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                Some((weight, tag))
            })
            .collect();
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (weight, tag) in ranges {
            if weight <= 0.0 {
                continue;
            }
            let primary = tag.split('-').next().unwrap_or("").to_ascii_lowercase();
            match primary.as_str() {
                "de" => return Lang::De,
                "en" => return Lang::En,
                _ => {}
            }
        }
        Lang::En
    }
}

impl FromStr for Lang {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "de" => Ok(Lang::De),
            "en" => Ok(Lang::En),
            other => Err(format!("unknown language {other:?}: use de or en")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_follows_the_browsers_weights() {
        assert_eq!(
            Lang::from_accept_language("de-DE,de;q=0.9,en;q=0.8"),
            Lang::De
        );
        assert_eq!(
            Lang::from_accept_language("fr, en;q=0.5, de;q=0.7"),
            Lang::De
        );
        assert_eq!(Lang::from_accept_language("fr"), Lang::En);
        assert_eq!(Lang::from_accept_language("de;q=0, en"), Lang::En);
        assert_eq!("DE".parse::<Lang>(), Ok(Lang::De));
        assert!("fr".parse::<Lang>().is_err());
    }
}
