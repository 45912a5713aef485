//! Query-string parameters of the management API, parsed one by one so a
//! bad value gets a 400 that names the parameter (a derived deserializer
//! would only say "invalid digit").

use super::error::ApiError;
use std::collections::HashMap;

/// The decoded query string of one request.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses `query` (`a=1&b=x%20y`). Unknown names are refused by
    /// [`Params::only`].
    pub fn parse(query: Option<&str>) -> Result<Params, ApiError> {
        let mut map = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k).ok_or_else(|| ApiError::bad_parameter(k, "bad percent-encoding"))?;
            let v = decode(v).ok_or_else(|| ApiError::bad_parameter(&k, "bad percent-encoding"))?;
            map.insert(k, v);
        }
        Ok(Params(map))
    }

    /// Refuses any parameter not in `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(ApiError::bad_parameter(
                k,
                format!("unknown parameter (known: {})", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// A text parameter.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A whole number in `min..=max`, `default` when absent.
    pub fn number(
        &self,
        name: &str,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, ApiError> {
        let Some(text) = self.text(name) else {
            return Ok(default);
        };
        let n: usize = text.parse().map_err(|_| {
            ApiError::bad_parameter(name, format!("{text:?} is not a whole number"))
        })?;
        if n < min || n > max {
            return Err(ApiError::bad_parameter(
                name,
                format!("{n} is out of range {min}..={max}"),
            ));
        }
        Ok(n)
    }

    /// One of `choices`, `default` when absent.
    pub fn choice<'a>(
        &self,
        name: &str,
        choices: &[&'a str],
        default: &'a str,
    ) -> Result<&'a str, ApiError> {
        let Some(text) = self.text(name) else {
            return Ok(default);
        };
        choices
            .iter()
            .find(|c| **c == text)
            .copied()
            .ok_or_else(|| {
                ApiError::bad_parameter(
                    name,
                    format!("{text:?} is not one of {}", choices.join(", ")),
                )
            })
    }
}

/// Percent-decoding with `+` as space (HTML forms send that).
fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn numbers_and_choices_name_the_parameter_when_bad() {
        let p = Params::parse(Some("page=2&page_size=x&kind=queue&name=a%2Fb+c")).unwrap();
        assert_eq!(p.number("page", 1, 1, 10).unwrap(), 2);
        assert_eq!(p.number("missing", 7, 1, 10).unwrap(), 7);
        let e = p.number("page_size", 1, 1, 10).unwrap_err();
        assert!(e.message.contains("`page_size`"), "{}", e.message);
        assert_eq!(
            p.choice("kind", &["queue", "topic"], "all").unwrap(),
            "queue"
        );
        assert_eq!(p.text("name"), Some("a/b c"));
        assert!(p.only(&["page", "page_size", "kind", "name"]).is_ok());
        let e = p.only(&["page"]).unwrap_err();
        assert!(e.message.contains("unknown parameter"), "{}", e.message);
        assert!(Params::parse(Some("a=%zz")).is_err());
        let e = Params::parse(Some("limit=0"))
            .unwrap()
            .number("limit", 1, 1, 5)
            .unwrap_err();
        assert!(e.message.contains("`limit`"));
    }
}
