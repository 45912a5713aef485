//! [`Headers`]: an ordered list of text name/value pairs, shared by STOMP frames,
//! native-protocol application headers and the broker's stored messages.

use std::fmt;

/// Ordered headers. Repeated names are kept; lookups return the first
/// occurrence, as the 1.1/1.2 specs require.
///
/// Names and values are stored unescaped in one `String` with an index of ranges,
/// so a decoded frame costs two allocations however many headers it has.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    /// `(name_start, name_end, value_end)`; the value starts at `name_end`.
    entries: Vec<(u32, u32, u32)>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// An empty header list with room for `entries` headers of `text_bytes`
    /// bytes of names and values in all, so building it allocates twice.
    pub fn with_capacity(entries: usize, text_bytes: usize) -> Headers {
        Headers {
            text: String::with_capacity(text_bytes),
            entries: Vec::with_capacity(entries),
        }
    }

    /// Appends a header, keeping any earlier one of the same name.
    pub fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        // Frames are bounded far below 4 GiB by `Limits`, so offsets fit in u32.
        self.entries
            .push((start as u32, name_end as u32, self.text.len() as u32));
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All headers in wire order, repeats included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(move |&(s, n, e)| {
            (
                &self.text[s as usize..n as usize],
                &self.text[n as usize..e as usize],
            )
        })
    }

    /// Number of header lines, repeats included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (n, v) in iter {
            h.push(n, v);
        }
        h
    }
}

impl Headers {
    /// Removes every header named in `names`, keeping the order of the rest.
    pub fn without(&self, names: &[&str]) -> Headers {
        self.iter().filter(|(n, _)| !names.contains(n)).collect()
    }
}
