//! Turning stack ids into resolved stacks through the meta store, with a
//! per-query cache so every location, mapping and function is read once.

use super::{Frame, FrameLine, Stack};
use crate::meta::{LocationId, MappingId, MetaError, MetaStore, StackId};
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// Resolves stacks for one query.
pub struct Resolver<'a> {
    meta: &'a MetaStore,
    frames: FxHashMap<LocationId, Arc<Frame>>,
    mappings: FxHashMap<MappingId, Arc<crate::meta::Mapping>>,
    stacks: FxHashMap<StackId, Arc<Stack>>,
}

impl<'a> Resolver<'a> {
    /// A resolver over `meta`.
    pub fn new(meta: &'a MetaStore) -> Self {
        Resolver {
            meta,
            frames: FxHashMap::default(),
            mappings: FxHashMap::default(),
            stacks: FxHashMap::default(),
        }
    }

    /// The resolved stack `id`.
    pub fn stack(&mut self, id: StackId) -> Result<Arc<Stack>, MetaError> {
        if let Some(s) = self.stacks.get(&id) {
            return Ok(s.clone());
        }
        let st = self.meta.stack(id)?;
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

    fn frame(&mut self, id: LocationId) -> Result<Arc<Frame>, MetaError> {
        if let Some(f) = self.frames.get(&id) {
            return Ok(f.clone());
        }
        let loc = self.meta.location(id)?;
        let mapping = match loc.mapping {
            None => None,
            Some(mid) => {
                let m = match self.mappings.get(&mid) {
                    Some(m) => m.clone(),
                    None => {
                        let m = self.meta.mapping(mid)?;
                        self.mappings.insert(mid, m.clone());
                        m
                    }
                };
                Some((mid.0, m))
            }
        };
        let mut lines = Vec::with_capacity(loc.lines.len());
        for l in &loc.lines {
            lines.push(FrameLine {
                function_id: l.function.0,
                function: self.meta.function(l.function)?,
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
