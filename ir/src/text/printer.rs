//! The printer: a [`Module`] in canonical kernel-language text.
//!
//! Layout definitions come first (`layout @name = expr`), then the kernels, separated by
//! blank lines; blocks are indented by four spaces; every statement is on its own line.
//! Tensor layouts equal to a defined layout are written `@name` (the first such
//! definition), others inline. The printer never fails: a malformed module (a handle out of
//! range, a name that is no identifier) prints as text that does not parse back.

use std::fmt::Write;

use anybit_layouts::{RegisterLayout, SharedLayout};

use crate::program::{
    Block, GridExpr, Kernel, LayoutDef, Module, NamedLayout, Op, Operand, RegisterTensorType, SharedTensorType, ValueId,
};

/// The module in canonical text (ending with a newline unless empty).
pub(crate) fn module(module: &Module) -> String {
    let mut out = String::new();
    for def in &module.layouts {
        let expr = match &def.layout {
            LayoutDef::Register(l) => l.to_string(),
            LayoutDef::Shared(l) => l.to_string(),
        };
        let _ = writeln!(out, "layout @{} = {expr}", def.name);
    }
    for (i, k) in module.kernels.iter().enumerate() {
        if i > 0 || !module.layouts.is_empty() {
            out.push('\n');
        }
        out.push_str(&kernel(k, &module.layouts));
    }
    out
}

/// One kernel in canonical text; layouts equal to one of `layouts` are written by name.
pub(crate) fn kernel(kernel: &Kernel, layouts: &[NamedLayout]) -> String {
    let mut p = Printer { kernel, layouts, out: String::new() };
    p.header();
    p.block(&kernel.body, 1);
    p.out.push_str("}\n");
    p.out
}

struct Printer<'a> {
    kernel: &'a Kernel,
    layouts: &'a [NamedLayout],
    out: String,
}

fn join(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join(", ")
}

fn sizes(shape: &[usize]) -> String {
    format!("[{}]", join(shape.iter().map(usize::to_string)))
}

impl Printer<'_> {
    fn header(&mut self) {
        let params = join(self.kernel.params.iter().map(|p| {
            let shape = if p.shape.is_empty() {
                String::new()
            } else {
                format!("[{}]", join(p.shape.iter().map(|g| self.grid(g))))
            };
            let align = p.align.map_or_else(String::new, |a| format!(" align {a}"));
            format!("{}: {}{shape}{align}", p.name, p.ty)
        }));
        let assumptions = if self.kernel.assumptions.is_empty() {
            String::new()
        } else {
            let each = self.kernel.assumptions.iter().map(|a| {
                let name = self
                    .kernel
                    .params
                    .get(a.param)
                    .map_or_else(|| format!("<parameter {}>", a.param), |p| p.name.clone());
                format!("{name} % {} == 0", a.divisor)
            });
            format!(" where {}", join(each))
        };
        let grid = join(self.kernel.grid.iter().map(|g| self.grid(g)));
        let _ = writeln!(
            self.out,
            "kernel {}({params}){assumptions} grid({grid}) warps({}) {{",
            self.kernel.name, self.kernel.warps
        );
    }

    fn grid(&self, g: &GridExpr) -> String {
        match g {
            GridExpr::Const(c) => c.to_string(),
            GridExpr::Param(i) => match self.kernel.params.get(*i) {
                Some(p) => p.name.clone(),
                None => format!("<parameter {i}>"),
            },
            GridExpr::Binary(op, a, b) => format!("{}({}, {})", op.name(), self.grid(a), self.grid(b)),
        }
    }

    fn value(&self, id: ValueId) -> String {
        match self.kernel.values.get(id) {
            Some(v) => format!("%{}", v.name),
            None => format!("%<invalid value {}>", id.index()),
        }
    }

    fn operand(&self, o: &Operand) -> String {
        match o {
            Operand::Value(v) => self.value(*v),
            Operand::Literal(l) => l.to_string(),
        }
    }

    fn operands(&self, ops: &[Operand]) -> String {
        join(ops.iter().map(|o| self.operand(o)))
    }

    fn register_layout(&self, layout: &RegisterLayout) -> String {
        let named = self.layouts.iter().find(|d| matches!(&d.layout, LayoutDef::Register(l) if l == layout));
        named.map_or_else(|| layout.to_string(), |d| format!("@{}", d.name))
    }

    fn shared_layout(&self, layout: &SharedLayout) -> String {
        let named = self.layouts.iter().find(|d| matches!(&d.layout, LayoutDef::Shared(l) if l == layout));
        named.map_or_else(|| layout.to_string(), |d| format!("@{}", d.name))
    }

    fn register_type(&self, ty: &RegisterTensorType) -> String {
        let mut text = format!("{}{}", ty.dtype, sizes(&ty.shape));
        if let Some(l) = &ty.layout {
            let _ = write!(text, " layout {}", self.register_layout(l));
        }
        text
    }

    fn shared_type(&self, ty: &SharedTensorType) -> String {
        let mut text = format!("{}{}", ty.dtype, sizes(&ty.shape));
        if let Some(l) = &ty.layout {
            let _ = write!(text, " layout {}", self.shared_layout(l));
        }
        text
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("    ");
        }
    }

    fn block(&mut self, block: &Block, depth: usize) {
        for &id in &block.insts {
            self.indent(depth);
            let Some(inst) = self.kernel.insts.get(id) else {
                let _ = writeln!(self.out, "<invalid instruction {}>", id.index());
                continue;
            };
            if !inst.results.is_empty() {
                let results = join(inst.results.iter().map(|&r| self.value(r)));
                let _ = write!(self.out, "{results} = ");
            }
            self.op(&inst.op, depth);
            if let Some(via) = &inst.via {
                let _ = write!(self.out, " via {via}");
            }
            self.out.push('\n');
        }
        if !block.yields.is_empty() {
            self.indent(depth);
            let yields = self.operands(&block.yields);
            let _ = writeln!(self.out, "yield {yields}");
        }
    }

    /// Writes an instruction (without its results or the final newline).
    fn op(&mut self, op: &Op, depth: usize) {
        let m = op.mnemonic();
        let text = match op {
            Op::Const { value, dtype } => format!("const {value} : {dtype}"),
            Op::BlockIndex { axis } => format!("block_index {axis}"),
            Op::Unary { x, .. } => format!("{m} {}", self.operand(x)),
            Op::Binary { lhs, rhs, .. } | Op::Compare { lhs, rhs, .. } => {
                format!("{m} {}, {}", self.operand(lhs), self.operand(rhs))
            }
            Op::Fma { a, b, c } => format!("fma {}, {}, {}", self.operand(a), self.operand(b), self.operand(c)),
            Op::Select { cond, on_true, on_false } => {
                format!("select {}, {}, {}", self.operand(cond), self.operand(on_true), self.operand(on_false))
            }
            Op::Cast { x, to } => format!("cast {} : {to}", self.operand(x)),
            Op::Lookup { x, table, to } => {
                format!("lookup {} [{}] : {to}", self.value(*x), join(table.iter().map(|l| l.to_string())))
            }
            Op::Fill { value, ty } => format!("fill {} : {}", self.operand(value), self.register_type(ty)),
            Op::Iota { dim, ty } => format!("iota {dim} : {}", self.register_type(ty)),
            Op::View { x, ty } | Op::Broadcast { x, ty } => {
                format!("{m} {} : {}", self.value(*x), self.register_type(ty))
            }
            Op::Reduce { op, x, dims, keep_dims, layout } => {
                let mut text = format!("reduce {op} {} dims {}", self.value(*x), sizes(dims));
                if *keep_dims {
                    text.push_str(" keep");
                }
                if let Some(l) = layout {
                    let _ = write!(text, " layout {}", self.register_layout(l));
                }
                text
            }
            Op::Dot { a, b, c } => format!("dot {}, {}, {}", self.value(*a), self.value(*b), self.value(*c)),
            Op::GlobalView { ptr, shape, strides } => format!(
                "global_view {} [{}] strides [{}]",
                self.value(*ptr),
                self.operands(shape),
                self.operands(strides)
            ),
            Op::LoadGlobal { src, offsets, ty, inside } => {
                let mut text =
                    format!("{m} {} [{}] : {}", self.value(*src), self.operands(offsets), self.register_type(ty));
                if !inside.is_empty() {
                    text.push_str(&format!(" inside {}", sizes(inside)));
                }
                text
            }
            Op::LoadShared { src, offsets, ty } => {
                format!("{m} {} [{}] : {}", self.value(*src), self.operands(offsets), self.register_type(ty))
            }
            Op::StoreGlobal { value, dst, offsets } | Op::StoreShared { value, dst, offsets } => {
                format!("{m} {}, {} [{}]", self.value(*value), self.value(*dst), self.operands(offsets))
            }
            Op::AllocShared { ty } => format!("alloc_shared : {}", self.shared_type(ty)),
            Op::FreeShared { tensor } => format!("free_shared {}", self.value(*tensor)),
            Op::CopyAsync { src, src_offsets, dst, dst_offsets, shape } => format!(
                "copy_async {} [{}], {} [{}] : {}",
                self.value(*src),
                self.operands(src_offsets),
                self.value(*dst),
                self.operands(dst_offsets),
                sizes(shape)
            ),
            Op::CommitGroup | Op::Sync => m.to_string(),
            Op::WaitGroup { pending } => format!("wait_group {pending}"),
            Op::For { start, end, step, unroll, index, carried, inits, body } => {
                let mut text = format!(
                    "for {} = {} to {} step {}",
                    self.value(*index),
                    self.operand(start),
                    self.operand(end),
                    self.operand(step)
                );
                if let Some(n) = unroll {
                    let _ = write!(text, " unroll {n}");
                }
                if !carried.is_empty() || !inits.is_empty() {
                    let bindings = (0..carried.len().max(inits.len())).map(|i| {
                        let name = carried.get(i).map_or_else(|| "%<missing>".to_string(), |&c| self.value(c));
                        let init = inits.get(i).map_or_else(|| "<missing>".to_string(), |o| self.operand(o));
                        format!("{name} = {init}")
                    });
                    let _ = write!(text, " iter ({})", join(bindings));
                }
                self.out.push_str(&text);
                self.out.push_str(" {\n");
                self.block(body, depth + 1);
                self.indent(depth);
                self.out.push('}');
                return;
            }
            Op::If { cond, then_body, else_body } => {
                let _ = writeln!(self.out, "if {} {{", self.operand(cond));
                self.block(then_body, depth + 1);
                self.indent(depth);
                self.out.push('}');
                if !else_body.insts.is_empty() || !else_body.yields.is_empty() || !then_body.yields.is_empty() {
                    self.out.push_str(" else {\n");
                    self.block(else_body, depth + 1);
                    self.indent(depth);
                    self.out.push('}');
                }
                return;
            }
        };
        self.out.push_str(&text);
    }
}
