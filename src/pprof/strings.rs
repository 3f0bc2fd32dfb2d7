//! [`StringTable`]: builds a pprof string table for writers of profiles.

use rustc_hash::FxHashMap;

/// An interning builder for a pprof `string_table`.
///
/// Index 0 is always `""`, as pprof requires, so a default (zero) string
/// field reads as the empty string. Each distinct string gets one index, in
/// order of first use.
///
/// ```
/// use profstore::pprof::StringTable;
/// let mut st = StringTable::new();
/// assert_eq!(st.intern(""), 0);
/// let cpu = st.intern("cpu");
/// assert_eq!(st.intern("cpu"), cpu);
/// assert_eq!(st.into_vec(), vec!["".to_string(), "cpu".to_string()]);
/// ```
#[derive(Debug, Clone)]
pub struct StringTable {
    /// Each string owned once, here; `into_vec` moves them into place.
    index: FxHashMap<String, i64>,
}

impl StringTable {
    /// A table holding only `""` at index 0.
    pub fn new() -> Self {
        let mut index = FxHashMap::default();
        index.insert(String::new(), 0);
        StringTable { index }
    }

    /// The index of `s`, adding it if it is new.
    pub fn intern(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        // A table cannot hold anywhere near i64::MAX strings.
        let i = self.index.len() as i64;
        self.index.insert(s.to_owned(), i);
        i
    }

    /// The number of strings, including the leading `""`.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Always false: the table holds at least `""`.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The table, ready for `Profile::string_table`.
    pub fn into_vec(self) -> Vec<String> {
        let mut out = vec![String::new(); self.index.len()];
        for (s, i) in self.index {
            // Indexes are exactly 0..len, each assigned once by `intern`.
            out[i as usize] = s;
        }
        out
    }
}

impl Default for StringTable {
    fn default() -> Self {
        Self::new()
    }
}
