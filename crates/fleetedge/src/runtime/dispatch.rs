//! [`Runtimes`]: the [`ModuleRuntime`] the agent uses. A module's `type` picks the backend:
//! `process` modules run on the [`ProcessRuntime`], `docker` modules on the
//! [`ContainerRuntime`]; a module whose type changes moves from one to the other.

use std::sync::Arc;

use super::container::ContainerRuntime;
use super::process::ProcessRuntime;
use super::{ModuleRuntime, ModuleSpec, ModuleState, RuntimeError};

pub struct Runtimes {
    pub process: Arc<ProcessRuntime>,
    pub container: Arc<ContainerRuntime>,
}

impl Runtimes {
    fn of(&self, spec: &ModuleSpec) -> (&dyn ModuleRuntime, &dyn ModuleRuntime) {
        if spec.container.is_some() {
            (self.container.as_ref(), self.process.as_ref())
        } else {
            (self.process.as_ref(), self.container.as_ref())
        }
    }

    fn holding(&self, name: &str) -> Option<&dyn ModuleRuntime> {
        if self.process.spec(name).is_some() {
            Some(self.process.as_ref())
        } else if self.container.spec(name).is_some() {
            Some(self.container.as_ref())
        } else {
            None
        }
    }
}

#[async_trait::async_trait]
impl ModuleRuntime for Runtimes {
    async fn apply(&self, spec: ModuleSpec) -> Result<(), RuntimeError> {
        let (target, other) = self.of(&spec);
        if other.spec(&spec.name).is_some() {
            other.remove(&spec.name).await?;
        }
        target.apply(spec).await
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        match self.holding(name) {
            Some(rt) => rt.remove(name).await,
            None => Err(RuntimeError::NotFound(name.into())),
        }
    }

    async fn restart(&self, name: &str) -> Result<(), RuntimeError> {
        match self.holding(name) {
            Some(rt) => rt.restart(name).await,
            None => Err(RuntimeError::NotFound(name.into())),
        }
    }

    fn list(&self) -> Vec<ModuleState> {
        let mut all = self.process.list();
        all.extend(self.container.list());
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn spec(&self, name: &str) -> Option<ModuleSpec> {
        self.process
            .spec(name)
            .or_else(|| self.container.spec(name))
    }

    async fn shutdown(&self) {
        tokio::join!(self.process.shutdown(), self.container.shutdown());
    }
}
