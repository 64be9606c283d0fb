//! The pass manager: named passes, plain per-level pipelines, the verifier after every pass.

use std::fmt;

use anybit_ir::diag::Diagnostics;
use anybit_ir::program::Module;
use anybit_ir::verify::{VerifyOptions, verify_module};

/// A transformation of a module that keeps its meaning: running the interpreter before and
/// after it on the same inputs gives the same outputs, bit for bit.
pub trait Pass {
    /// The pass's name (`dce`, `infer-layouts`): what `--passes` takes.
    fn name(&self) -> &'static str;

    /// One line on what it does.
    fn description(&self) -> &'static str;

    /// Transforms the module in place. On error the module may be half-transformed: drop it.
    fn run(&self, module: &mut Module) -> Result<(), String>;
}

/// Why a pipeline failed.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// A pass name is not known.
    #[error("unknown pass `{name}` (known: {known})")]
    UnknownPass {
        /// The name given.
        name: String,
        /// The known names.
        known: String,
    },
    /// A pass reported a failure.
    #[error("pass `{pass}` failed: {message}")]
    Failed {
        /// The pass.
        pass: String,
        /// Its message.
        message: String,
    },
    /// A pass produced a module that does not verify.
    #[error("pass `{pass}` produced a module that does not verify:\n{diagnostics}")]
    Verify {
        /// The pass.
        pass: String,
        /// The verifier's report.
        diagnostics: Diagnostics,
    },
}

/// Optimization levels: which pipeline runs by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptLevel {
    /// Only what code generation needs: missing layouts inferred, instructions selected
    /// (global accesses stay element by element).
    O0,
    /// Plus index simplification, dead code elimination and vectorization.
    O1,
    /// Everything (today the same as `-O1`).
    O2,
}

impl OptLevel {
    /// The pass names of this level's pipeline, in order.
    pub fn pipeline(self) -> &'static [&'static str] {
        match self {
            OptLevel::O0 => &["infer-layouts", "select-instructions"],
            OptLevel::O1 => &["simplify-indices", "dce", "infer-layouts", "vectorize", "select-instructions"],
            OptLevel::O2 => &["simplify-indices", "dce", "infer-layouts", "vectorize", "select-instructions"],
        }
    }
}

impl fmt::Display for OptLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptLevel::O0 => "-O0",
            OptLevel::O1 => "-O1",
            OptLevel::O2 => "-O2",
        })
    }
}

/// Every pass, by name.
pub fn registry() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(crate::dce::DeadCodeElimination),
        Box::new(crate::infer::InferLayouts),
        Box::new(crate::simplify::SimplifyIndices::default()),
        Box::new(crate::vectorize::Vectorize),
        Box::new(crate::select::SelectInstructions),
    ]
}

/// The pass called `name`.
pub fn pass(name: &str) -> Result<Box<dyn Pass>, PassError> {
    let mut all = registry();
    match all.iter().position(|p| p.name() == name) {
        Some(i) => Ok(all.swap_remove(i)),
        None => Err(PassError::UnknownPass {
            name: name.to_owned(),
            known: registry().iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// Called after each pass with its name and the module (for `--print-after-all`).
pub type AfterPass<'a> = Box<dyn FnMut(&str, &Module) + 'a>;

/// Runs a list of passes, verifying after each one.
pub struct PassManager<'a> {
    passes: Vec<Box<dyn Pass>>,
    verify: Option<VerifyOptions>,
    after_pass: Option<AfterPass<'a>>,
}

impl fmt::Debug for PassManager<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassManager")
            .field("passes", &self.passes.iter().map(|p| p.name()).collect::<Vec<_>>())
            .field("verify", &self.verify)
            .finish()
    }
}

impl<'a> PassManager<'a> {
    /// The pipeline of a level. The verifier runs after every pass in debug builds (and so in
    /// tests); [`PassManager::verify_each`] changes that.
    pub fn for_level(level: OptLevel) -> PassManager<'a> {
        PassManager::from_names(level.pipeline()).unwrap_or_else(|_| PassManager::new(Vec::new()))
    }

    /// A pipeline of named passes (`--passes a,b,c`).
    pub fn from_names(names: &[&str]) -> Result<PassManager<'a>, PassError> {
        Ok(PassManager::new(names.iter().map(|n| pass(n)).collect::<Result<_, _>>()?))
    }

    /// A pipeline of these passes.
    pub fn new(passes: Vec<Box<dyn Pass>>) -> PassManager<'a> {
        PassManager { passes, verify: cfg!(debug_assertions).then(VerifyOptions::default), after_pass: None }
    }

    /// Verify after every pass with these options, or never (`None`).
    pub fn verify_each(mut self, options: Option<VerifyOptions>) -> PassManager<'a> {
        self.verify = options;
        self
    }

    /// Call `f` after each pass (e.g. to print the module).
    pub fn after_each(mut self, f: AfterPass<'a>) -> PassManager<'a> {
        self.after_pass = Some(f);
        self
    }

    /// The names of the passes, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Runs every pass in order on `module`.
    pub fn run(&mut self, module: &mut Module) -> Result<(), PassError> {
        for pass in &self.passes {
            pass.run(module).map_err(|message| PassError::Failed { pass: pass.name().to_owned(), message })?;
            if let Some(options) = &self.verify {
                verify_module(module, options)
                    .map_err(|diagnostics| PassError::Verify { pass: pass.name().to_owned(), diagnostics })?;
            }
            if let Some(f) = &mut self.after_pass {
                f(pass.name(), module);
            }
        }
        Ok(())
    }
}
