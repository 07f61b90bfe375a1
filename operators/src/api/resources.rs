//! What a topology shares between its nodes, made once by the compiler's link stage and handed
//! to every config half ([`crate::api::kind::Kind::build`]): declared models and tools, the
//! vector indexes of `memory-index` operators, the admitted set of an `admissions` operator,
//! the bus `delegate` tools publish on, and where the topology file is.
//!
//! The map is type-erased, `(type, name) → Arc<T>`, because this crate sits below the ones
//! that define most of what is stored (the agent crate's `SharedModel` and `Tool`): each wing
//! gives its own typed accessors as an extension trait (`kafclaw_agent::resources`), as Vector's
//! `TransformContext` and Arroyo's operator registry hand shared resources to a constructor.

use std::any::{Any, TypeId, type_name};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One stored value, and the name of its type (for `Debug`).
struct Entry {
    type_name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
}

/// Shared resources by type and name (see the [module docs](self)).
pub struct Resources {
    base_dir: PathBuf,
    topology: String,
    items: BTreeMap<(TypeId, String), Entry>,
}

impl Resources {
    /// Empty resources of topology `topology`, whose file is in `base_dir`.
    pub fn new(base_dir: impl Into<PathBuf>, topology: impl Into<String>) -> Self {
        Self { base_dir: base_dir.into(), topology: topology.into(), items: BTreeMap::new() }
    }

    /// The topology file's folder: relative paths in options are resolved against it.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The topology's name.
    pub fn topology(&self) -> &str {
        &self.topology
    }

    /// Stores `value` as the `T` called `name`, and returns the one it replaces.
    pub fn insert<T: Any + Send + Sync>(&mut self, name: impl Into<String>, value: Arc<T>) -> Option<Arc<T>> {
        let entry = Entry { type_name: type_name::<T>(), value };
        let old = self.items.insert((TypeId::of::<T>(), name.into()), entry)?;
        old.value.downcast::<T>().ok()
    }

    /// The `T` called `name`, when one was stored.
    pub fn get<T: Any + Send + Sync>(&self, name: &str) -> Option<Arc<T>> {
        let entry = self.items.get(&(TypeId::of::<T>(), name.to_owned()))?;
        entry.value.clone().downcast::<T>().ok()
    }

    /// Every `T` stored, with its name, in name order.
    pub fn all<T: Any + Send + Sync>(&self) -> Vec<(&str, Arc<T>)> {
        self.items
            .iter()
            .filter(|((t, _), _)| *t == TypeId::of::<T>())
            .filter_map(|((_, name), e)| Some((name.as_str(), e.value.clone().downcast::<T>().ok()?)))
            .collect()
    }
}

impl Default for Resources {
    /// No resources, for a topology called `kafclaw` in the current folder.
    fn default() -> Self {
        Self::new(".", "kafclaw")
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items: Vec<String> = self.items.iter().map(|((_, name), e)| format!("{}:{name}", e.type_name)).collect();
        f.debug_struct("Resources")
            .field("base_dir", &self.base_dir)
            .field("topology", &self.topology)
            .field("items", &items)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_type_and_name() {
        let mut r = Resources::new("/srv", "t");
        assert!(r.insert("a", Arc::new(1_u32)).is_none());
        r.insert("b", Arc::new(2_u32));
        r.insert("a", Arc::new("text".to_owned()));
        assert_eq!(r.get::<u32>("a").as_deref(), Some(&1));
        assert_eq!(r.get::<String>("a").as_deref().map(String::as_str), Some("text"));
        assert!(r.get::<u64>("a").is_none());
        assert!(r.get::<u32>("c").is_none());
        assert_eq!(r.insert("a", Arc::new(3_u32)).as_deref(), Some(&1));
        let all: Vec<(&str, u32)> = r.all::<u32>().into_iter().map(|(n, v)| (n, *v)).collect();
        assert_eq!(all, vec![("a", 3), ("b", 2)]);
        assert_eq!((r.base_dir(), r.topology()), (Path::new("/srv"), "t"));
        assert!(format!("{r:?}").contains("u32:b"));
    }
}
