//! Turning stack ids into resolved stacks, with a per-query cache so every
//! location, mapping and function is read once.
//!
//! A resolver reads from a list of [`SymbolSource`]s in order: the symbols
//! of the blocks a query read, then the meta store for the head's stacks.
//! Ids are content ids, so the first source that has an entity has the
//! right one.

use super::{Frame, FrameLine, Stack};
use super::{
    Function, FunctionId, LocationId, Mapping, MappingId, StackId, SymbolError, SymbolSource,
};

use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Resolves stacks for one query.
pub struct Resolver<'a> {
    sources: Vec<&'a dyn SymbolSource>,
    frames: FxHashMap<LocationId, Arc<Frame>>,
    mappings: FxHashMap<MappingId, Arc<Mapping>>,
    functions: FxHashMap<FunctionId, Arc<Function>>,
    stacks: FxHashMap<StackId, Arc<Stack>>,
}

/// The first of `sources` that has the entity `id`, or `NotFound`.
fn first<T>(
    sources: &[&dyn SymbolSource],
    kind: &'static str,
    id: uuid::Uuid,
    get: impl Fn(&dyn SymbolSource) -> Result<Option<T>, SymbolError>,
) -> Result<T, SymbolError> {
    for s in sources {
        if let Some(v) = get(*s)? {
            return Ok(v);
        }
    }
    Err(SymbolError::NotFound { kind, id })
}

impl<'a> Resolver<'a> {
    /// A resolver over `sources`, asked in order.
    pub fn new(sources: Vec<&'a dyn SymbolSource>) -> Self {
        Resolver {
            sources,
            frames: FxHashMap::default(),
            mappings: FxHashMap::default(),
            functions: FxHashMap::default(),
            stacks: FxHashMap::default(),
        }
    }

    /// The resolved stack `id`.
    pub fn stack(&mut self, id: StackId) -> Result<Arc<Stack>, SymbolError> {
        if let Some(s) = self.stacks.get(&id) {
            return Ok(s.clone());
        }
        let st = first(&self.sources, "stacktrace", id.0, |s| s.stack(id))?;
        let mut frames = Vec::with_capacity(st.locations.len());
        for l in &st.locations {
            frames.push(self.frame(*l)?);
        }
        let s = Arc::new(Stack {
            frames,
            num_labels: st.num_labels.clone(),
        });
        self.stacks.insert(id, s.clone());
        Ok(s)
    }

    fn frame(&mut self, id: LocationId) -> Result<Arc<Frame>, SymbolError> {
        if let Some(f) = self.frames.get(&id) {
            return Ok(f.clone());
        }
        let loc = first(&self.sources, "location", id.0, |s| s.location(id))?;
        let mapping = match loc.mapping {
            None => None,
            Some(mid) => {
                let m = match self.mappings.get(&mid) {
                    Some(m) => m.clone(),
                    None => {
                        let m = first(&self.sources, "mapping", mid.0, |s| s.mapping(mid))?;
                        self.mappings.insert(mid, m.clone());
                        m
                    }
                };
                Some((mid.0, m))
            }
        };
        let mut lines = Vec::with_capacity(loc.lines.len());
        for l in &loc.lines {
            let function = match self.functions.get(&l.function) {
                Some(f) => f.clone(),
                None => {
                    let f = first(&self.sources, "function", l.function.0, |s| {
                        s.function(l.function)
                    })?;
                    self.functions.insert(l.function, f.clone());
                    f
                }
            };
            lines.push(FrameLine {
                function_id: l.function.0,
                function,
                line: l.line,
                column: l.column,
            });
        }
        let f = Arc::new(Frame {
            id: id.0,
            address: loc.address,
            is_folded: loc.is_folded,
            mapping,
            lines,
        });
        self.frames.insert(id, f.clone());
        Ok(f)
    }
}
