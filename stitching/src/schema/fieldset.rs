//! Field sets: what a fetch needs from its parent object before it can run.
//!
//! Every dialect's requirement becomes one of these, over public field
//! names: a Federation `@key(fields:)` or `@requires(fields:)`, a Composite
//! Schemas `@key`, `@is` or `@require`, a stitching `$fields:owner.id`. The
//! planner fetches them from whichever subgraph serves them.

use std::fmt;

use apollo_compiler::{executable::Selection, Name};

/// A selection of fields without arguments, aliases or fragments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldSet {
    pub fields: Vec<FieldSetField>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldSetField {
    pub name: Name,
    /// Empty for leaves.
    pub selection: FieldSet,
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The field set of one dotted path: `owner.id` is `owner { id }`.
    pub fn from_path(path: &[Name]) -> FieldSet {
        let mut set = FieldSet::default();
        set.add_path(path);
        set
    }

    /// Adds `a.b.c`, sharing the prefix with what is there.
    pub fn add_path(&mut self, path: &[Name]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let field = match self.fields.iter_mut().position(|f| f.name == *first) {
            Some(i) => &mut self.fields[i],
            None => {
                self.fields.push(FieldSetField {
                    name: first.clone(),
                    selection: FieldSet::default(),
                });
                let last = self.fields.len() - 1;
                &mut self.fields[last]
            }
        };
        field.selection.add_path(rest);
    }

    /// Adds every field of `other`.
    pub fn merge(&mut self, other: &FieldSet) {
        for f in &other.fields {
            match self.fields.iter_mut().find(|x| x.name == f.name) {
                Some(x) => x.selection.merge(&f.selection),
                None => self.fields.push(f.clone()),
            }
        }
    }

    /// Every leaf path, e.g. `[["owner", "id"], ["sku"]]`.
    pub fn leaf_paths(&self) -> Vec<Vec<Name>> {
        let mut out = Vec::new();
        for f in &self.fields {
            if f.selection.is_empty() {
                out.push(vec![f.name.clone()]);
            } else {
                for mut p in f.selection.leaf_paths() {
                    p.insert(0, f.name.clone());
                    out.push(p);
                }
            }
        }
        out
    }

    /// Whether every field of `self` is in `other`.
    pub fn is_within(&self, other: &FieldSet) -> bool {
        self.fields.iter().all(|f| {
            other
                .fields
                .iter()
                .any(|o| o.name == f.name && f.selection.is_within(&o.selection))
        })
    }

    /// The sub-set below field `name`, if it is selected.
    pub fn below(&self, name: &str) -> Option<&FieldSet> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.selection)
    }

    /// From a validated selection set (`@key(fields:)` and the like);
    /// `Err` names the first construct a field set may not hold.
    pub fn from_selection(
        set: &apollo_compiler::executable::SelectionSet,
    ) -> Result<FieldSet, String> {
        let mut out = FieldSet::default();
        for sel in &set.selections {
            match sel {
                Selection::Field(f) => {
                    if f.alias.is_some() {
                        return Err(format!("`{}` has an alias", f.name));
                    }
                    if !f.arguments.is_empty() {
                        return Err(format!("`{}` has arguments", f.name));
                    }
                    if !f.directives.is_empty() {
                        return Err(format!("`{}` has directives", f.name));
                    }
                    let below = FieldSet::from_selection(&f.selection_set)?;
                    match out.fields.iter_mut().find(|x| x.name == f.name) {
                        Some(x) => x.selection.merge(&below),
                        None => out.fields.push(FieldSetField {
                            name: f.name.clone(),
                            selection: below,
                        }),
                    }
                }
                Selection::InlineFragment(_) | Selection::FragmentSpread(_) => {
                    return Err("fragments are not supported in field sets".into())
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for FieldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&field.name)?;
            if !field.selection.is_empty() {
                write!(f, " {{ {} }}", field.selection)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn paths_share_prefixes_and_print_as_selections() {
        let mut set = FieldSet::from_path(&[n("owner"), n("id")]);
        set.add_path(&[n("sku")]);
        set.add_path(&[n("owner"), n("name")]);
        assert_eq!(set.to_string(), "owner { id name } sku");
        assert_eq!(
            set.leaf_paths(),
            vec![
                vec![n("owner"), n("id")],
                vec![n("owner"), n("name")],
                vec![n("sku")]
            ]
        );
        assert!(FieldSet::from_path(&[n("owner"), n("id")]).is_within(&set));
        assert!(!FieldSet::from_path(&[n("owner"), n("x")]).is_within(&set));
    }
}
