//! Kernel-wide checks that need no walk over the blocks: the signature (name, warps, grid),
//! the names of parameters and values, and the consistency of value definitions.

use std::collections::HashMap;

use super::Checker;
use crate::builder::is_valid_name;
use crate::program::{GridExpr, Op, ParamType, ValueDef};

impl Checker<'_> {
    /// Invariants 18–19: the kernel's name, its warps, its grid and its buffer shapes.
    pub(super) fn check_signature(&mut self) {
        let k = self.kernel;
        if !is_valid_name(&k.name) {
            self.error(k.span, format!("the kernel name `{}` is not a valid identifier", k.name), vec![]);
        }
        if !(1..=32).contains(&k.warps) {
            self.error(
                k.span,
                format!("warps({}) is out of range: a block has 1 to 32 warps (32 to 1024 threads)", k.warps),
                vec![],
            );
        }
        if k.grid.is_empty() || k.grid.len() > 3 {
            self.error(k.span, format!("the grid has {} dimensions; it must have 1 to 3", k.grid.len()), vec![]);
        }
        let grid = k.grid.iter().enumerate().map(|(axis, e)| (format!("grid dimension {axis}"), e));
        let shapes = k.params.iter().flat_map(|p| {
            p.shape.iter().enumerate().map(move |(d, e)| (format!("the shape of `{}` (dimension {d})", p.name), e))
        });
        let owned: Vec<(String, &GridExpr)> = grid.chain(shapes).collect();
        for param in &k.params {
            if !param.shape.is_empty() && matches!(param.ty, ParamType::Scalar(_)) {
                self.error(
                    param.span.or(k.span),
                    format!("scalar parameter `{}` has a shape; only pointers declare buffer shapes", param.name),
                    vec![],
                );
            }
            if let Some(align) = param.align {
                if matches!(param.ty, ParamType::Scalar(_)) {
                    let message = format!("scalar parameter `{}` has an alignment; only pointers do", param.name);
                    self.error(param.span.or(k.span), message, vec![]);
                } else if !align.is_power_of_two() || align > 4096 {
                    let message =
                        format!("parameter `{}`: alignment {align} is not a power of two of at most 4096", param.name);
                    self.error(param.span.or(k.span), message, vec![]);
                }
            }
        }
        for a in &k.assumptions {
            match k.params.get(a.param) {
                Some(param) if matches!(param.ty, ParamType::Scalar(d) if d.is_integer()) => {
                    if a.divisor == 0 {
                        let message = format!("the assumption `{} % 0 == 0` divides by zero", param.name);
                        self.error(a.span.or(k.span), message, vec![]);
                    }
                }
                Some(param) => {
                    let message = format!("an assumption names `{}`, which is not an integer scalar", param.name);
                    self.error(a.span.or(k.span), message, vec![]);
                }
                None => {
                    let message = format!("an assumption names parameter #{} (no such parameter)", a.param);
                    self.error(a.span.or(k.span), message, vec![]);
                }
            }
        }
        for (axis, expr) in owned {
            // Iteratively, so that no nesting depth can overflow the stack.
            let mut stack: Vec<&GridExpr> = vec![expr];
            while let Some(e) = stack.pop() {
                match e {
                    GridExpr::Const(_) => {}
                    GridExpr::Binary(_, a, b) => {
                        stack.push(b);
                        stack.push(a);
                    }
                    GridExpr::Param(p) => match k.params.get(*p) {
                        Some(param) => match param.ty {
                            ParamType::Scalar(d) if d.is_integer() => {}
                            ty => self.error(
                                param.span.or(k.span),
                                format!(
                                    "{axis} uses parameter `{}`, a `{ty}`; grid and shape expressions use integer \
                                     scalar parameters only",
                                    param.name
                                ),
                                vec![],
                            ),
                        },
                        None => self.error(
                            k.span,
                            format!("{axis} uses parameter #{p}, but the kernel has {} parameters", k.params.len()),
                            vec![],
                        ),
                    },
                }
            }
        }
    }

    /// Invariants 7.4–7.5: parameter and value names are valid identifiers, unique in the
    /// kernel. A parameter's value carries the parameter's name (checked with the definitions),
    /// so it is checked once, as the parameter.
    pub(super) fn check_names(&mut self) {
        let k = self.kernel;
        let mut taken: HashMap<&str, String> = HashMap::new();
        for (p, param) in k.params.iter().enumerate() {
            if !is_valid_name(&param.name) {
                self.error(
                    param.span.or(k.span),
                    format!("parameter #{p} is named `{}`, which is not a valid identifier", param.name),
                    vec![],
                );
            }
            if let Some(first) = taken.get(param.name.as_str()) {
                self.error(
                    param.span.or(k.span),
                    format!("the name `{}` of parameter #{p} is already used by {first}", param.name),
                    vec![],
                );
            } else {
                taken.insert(&param.name, format!("parameter #{p}"));
            }
        }
        for (v, data) in k.values.iter() {
            // The value of a parameter, named like it: already checked as the parameter.
            if let ValueDef::Param(p) = data.def
                && k.params.get(p).is_some_and(|param| param.value == v && param.name == data.name)
            {
                continue;
            }
            let span = self.value_span(v);
            if !is_valid_name(&data.name) {
                self.error(
                    span,
                    format!("value #{} is named `%{}`, which is not a valid identifier", v.index(), data.name),
                    vec![],
                );
            }
            if let Some(first) = taken.get(data.name.as_str()) {
                self.error(
                    span,
                    format!("the name `%{}` of value #{} is already used by {first}", data.name, v.index()),
                    vec![],
                );
            } else {
                taken.insert(&data.name, format!("value #{}", v.index()));
            }
        }
    }

    /// Invariants 1.1 and 1.3–1.4: every handle a parameter or an instruction defines is in
    /// range, every value is defined by exactly one place, and its recorded definition is that
    /// place; a parameter's value has the parameter's name and type.
    pub(super) fn check_definitions(&mut self) {
        let k = self.kernel;
        let mut claims: Vec<Vec<ValueDef>> = vec![Vec::new(); k.values.len()];
        for (p, param) in k.params.iter().enumerate() {
            match claims.get_mut(param.value.index()) {
                Some(list) => list.push(ValueDef::Param(p)),
                None => self.error(
                    param.span.or(k.span),
                    format!(
                        "parameter `{}` stands for value #{}, which does not exist (the kernel has {} values)",
                        param.name,
                        param.value.index(),
                        k.values.len()
                    ),
                    vec![],
                ),
            }
        }
        for (id, inst) in k.insts.iter() {
            let mut defined = Vec::new();
            for (i, &r) in inst.results.iter().enumerate() {
                defined.push((r, ValueDef::Result(id, i), format!("result {i}")));
            }
            if let Op::For { index, carried, .. } = &inst.op {
                defined.push((*index, ValueDef::LoopIndex(id), "the loop index".to_string()));
                for (i, &c) in carried.iter().enumerate() {
                    defined.push((c, ValueDef::LoopCarried(id, i), format!("carried value {i}")));
                }
            }
            for (v, def, what) in defined {
                match claims.get_mut(v.index()) {
                    Some(list) => list.push(def),
                    None => self.error(
                        inst.span,
                        format!(
                            "{}: {what} is value #{}, which does not exist (the kernel has {} values)",
                            self.inst_ref(id),
                            v.index(),
                            k.values.len()
                        ),
                        vec![],
                    ),
                }
            }
        }
        for ((v, data), places) in k.values.iter().zip(&claims) {
            let span = self.value_span(v);
            match places.as_slice() {
                [] => self.error(
                    span,
                    format!(
                        "value %{} is defined nowhere: it is recorded as {}, which does not define it",
                        data.name,
                        self.def_desc(data.def)
                    ),
                    vec![],
                ),
                [place] => {
                    if *place != data.def {
                        self.error(
                            span,
                            format!(
                                "value %{} is recorded as {}, but it is {}",
                                data.name,
                                self.def_desc(data.def),
                                self.def_desc(*place)
                            ),
                            vec![],
                        );
                    }
                }
                many => {
                    let list: Vec<String> = many.iter().map(|&d| self.def_desc(d)).collect();
                    self.error(
                        span,
                        format!("value %{} is defined {} times: as {}", data.name, many.len(), list.join(", as ")),
                        vec!["SSA: every value is defined exactly once".to_string()],
                    );
                }
            }
            for place in places {
                let ValueDef::Param(p) = *place else { continue };
                let Some(param) = k.params.get(p) else { continue };
                let span = param.span.or(span);
                if param.name != data.name {
                    self.error(
                        span,
                        format!(
                            "parameter `{}` stands for a value named %{}; they must have the same name",
                            param.name, data.name
                        ),
                        vec![],
                    );
                }
                if param.ty.value_type() != data.ty {
                    self.error(
                        span,
                        format!(
                            "parameter `{}` is a `{}`, but its value %{} is recorded as a {}",
                            param.name,
                            param.ty,
                            data.name,
                            super::type_text(&data.ty)
                        ),
                        vec![],
                    );
                }
            }
        }
    }
}
