//! Service-side management: individual enrollments, enrollment groups, registration records,
//! and bulk enrollment operations (DPS service REST API, docs/protocol-notes.md, "Service REST API and api-versions").

use super::{Dps, validate};
use crate::dps::Error;
use fleethub_api::{
    AttestationMechanism, BulkEnrollmentGroupOperation, BulkEnrollmentOperation,
    DeviceRegistrationState, EnrollmentGroup, IndividualEnrollment,
};
use fleethub_core::ids;
use fleethub_storage::{Page, PageRequest, Precondition, StoreError};

/// Bulk operations accept at most this many items (Azure: 10; we are generous).
pub const MAX_BULK_ITEMS: usize = 1000;

/// An item of a bulk operation that failed (the others were applied): its registration or
/// group ID and why.
#[derive(Debug)]
pub struct BulkFailure {
    pub id: String,
    pub error: Error,
}

#[allow(clippy::needless_pass_by_value, reason = "used as `map_err(id_error)`")]
fn id_error(e: ids::IdError) -> Error {
    Error::invalid(e.to_string())
}

impl Dps {
    // ---------------------------------------------------------------- individual enrollments

    /// Creates or replaces an individual enrollment. `path_id` is the ID in the URL; the body's
    /// `registrationId` must match it (case-insensitively) when present.
    pub async fn put_enrollment(
        &self,
        path_id: &str,
        mut e: IndividualEnrollment,
        if_match: Option<&str>,
    ) -> Result<IndividualEnrollment, Error> {
        ids::validate_registration_id(path_id).map_err(id_error)?;
        if e.registration_id.is_empty() {
            e.registration_id = path_id.to_string();
        } else if !e.registration_id.eq_ignore_ascii_case(path_id) {
            return Err(Error::invalid(format!(
                "registrationId '{}' in the body does not match '{path_id}' in the URL",
                e.registration_id
            )));
        }
        let what = format!("enrollment '{path_id}'");
        validate::attestation(&mut e.attestation, &what)?;
        validate::provisioning_status(&mut e.provisioning_status, &what)?;
        validate::initial_twin(e.initial_twin.as_ref(), &what)?;
        self.check_allocation(
            &mut e.allocation_policy,
            e.iot_hubs.as_ref(),
            e.iot_hub_host_name.as_ref(),
            e.custom_allocation_definition.as_ref(),
            &what,
        )
        .await?;
        if let Some(d) = e.device_id.as_deref().filter(|d| !d.is_empty()) {
            ids::validate_device_id(d)
                .map_err(|err| Error::invalid(format!("{what}: deviceId is invalid: {err}")))?;
        }
        Ok(self
            .store
            .put_enrollment(e, Precondition::from_if_match(if_match))
            .await?)
    }

    /// An individual enrollment with its `registrationState` (the registration record of a
    /// device that registered through it), as Azure shows it.
    pub async fn get_enrollment(&self, id: &str) -> Result<IndividualEnrollment, Error> {
        let e = self
            .store
            .get_enrollment(id)
            .await?
            .ok_or_else(|| Error::EnrollmentNotFound { id: id.to_string() })?;
        self.with_registration_state(e).await
    }

    /// Joins the enrollment's registration record (only one that came through the individual
    /// enrollment, not a group record of the same registration ID).
    async fn with_registration_state(
        &self,
        mut e: IndividualEnrollment,
    ) -> Result<IndividualEnrollment, Error> {
        e.registration_state = self
            .store
            .get_registration(&e.registration_id)
            .await?
            .map(|r| r.state)
            .filter(|s| s.enrollment_group_id.is_none());
        Ok(e)
    }

    pub async fn delete_enrollment(&self, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        Ok(self
            .store
            .delete_enrollment(id, Precondition::from_if_match(if_match))
            .await?)
    }

    pub async fn query_enrollments(
        &self,
        page: PageRequest,
    ) -> Result<Page<IndividualEnrollment>, Error> {
        let Page {
            items,
            continuation,
        } = self.store.list_enrollments(page).await?;
        let mut joined = Vec::with_capacity(items.len());
        for e in items {
            joined.push(self.with_registration_state(e).await?);
        }
        Ok(Page {
            items: joined,
            continuation,
        })
    }

    pub async fn enrollment_attestation(&self, id: &str) -> Result<AttestationMechanism, Error> {
        Ok(self.get_enrollment(id).await?.attestation)
    }

    pub async fn bulk_enrollments(
        &self,
        op: BulkEnrollmentOperation,
    ) -> Result<Vec<BulkFailure>, Error> {
        check_bulk_size(op.enrollments.len())?;
        let mode = bulk_mode(&op.mode)?;
        let mut errors = Vec::new();
        for e in op.enrollments {
            let id = e.registration_id.clone();
            let etag = e.etag.clone();
            let r = match mode {
                BulkMode::Create => {
                    self.put_enrollment_cond(&id, e, Precondition::MustNotExist)
                        .await
                }
                BulkMode::Update => self.put_enrollment_cond(&id, e, Precondition::Any).await,
                BulkMode::UpdateIfMatch => {
                    let cond = Precondition::IfMatch(etag.unwrap_or_else(|| "*".into()));
                    self.put_enrollment_cond(&id, e, cond).await
                }
                BulkMode::Delete => self.delete_enrollment(&id, etag.as_deref()).await,
            };
            if let Err(error) = r {
                errors.push(BulkFailure { id, error });
            }
        }
        Ok(errors)
    }

    async fn put_enrollment_cond(
        &self,
        id: &str,
        e: IndividualEnrollment,
        cond: Precondition,
    ) -> Result<(), Error> {
        let if_match = match &cond {
            Precondition::IfMatch(v) => Some(v.clone()),
            _ => None,
        };
        if cond == Precondition::MustNotExist && self.store.get_enrollment(id).await?.is_some() {
            return Err(Error::EnrollmentAlreadyExists { id: id.to_string() });
        }
        self.put_enrollment(id, e, if_match.as_deref())
            .await
            .map(|_| ())
    }

    // ---------------------------------------------------------------- enrollment groups

    pub async fn put_group(
        &self,
        path_id: &str,
        mut g: EnrollmentGroup,
        if_match: Option<&str>,
    ) -> Result<EnrollmentGroup, Error> {
        ids::validate_enrollment_group_id(path_id).map_err(id_error)?;
        if g.enrollment_group_id.is_empty() {
            g.enrollment_group_id = path_id.to_string();
        } else if !g.enrollment_group_id.eq_ignore_ascii_case(path_id) {
            return Err(Error::invalid(format!(
                "enrollmentGroupId '{}' in the body does not match '{path_id}' in the URL",
                g.enrollment_group_id
            )));
        }
        let what = format!("enrollment group '{path_id}'");
        validate::attestation(&mut g.attestation, &what)?;
        validate::provisioning_status(&mut g.provisioning_status, &what)?;
        validate::initial_twin(g.initial_twin.as_ref(), &what)?;
        self.check_allocation(
            &mut g.allocation_policy,
            g.iot_hubs.as_ref(),
            g.iot_hub_host_name.as_ref(),
            g.custom_allocation_definition.as_ref(),
            &what,
        )
        .await?;
        let out = self
            .store
            .put_group(g, Precondition::from_if_match(if_match))
            .await;
        self.groups.invalidate();
        Ok(out?)
    }

    pub async fn get_group(&self, id: &str) -> Result<EnrollmentGroup, Error> {
        self.store
            .get_group(id)
            .await?
            .ok_or_else(|| Error::GroupNotFound { id: id.to_string() })
    }

    /// Deletes a group; its registration records are kept.
    pub async fn delete_group(&self, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        let r = self
            .store
            .delete_group(id, Precondition::from_if_match(if_match))
            .await;
        self.groups.invalidate();
        Ok(r?)
    }

    pub async fn query_groups(&self, page: PageRequest) -> Result<Page<EnrollmentGroup>, Error> {
        Ok(self.store.list_groups(page).await?)
    }

    pub async fn group_attestation(&self, id: &str) -> Result<AttestationMechanism, Error> {
        Ok(self.get_group(id).await?.attestation)
    }

    pub async fn bulk_groups(
        &self,
        op: BulkEnrollmentGroupOperation,
    ) -> Result<Vec<BulkFailure>, Error> {
        check_bulk_size(op.enrollment_groups.len())?;
        let mode = bulk_mode(&op.mode)?;
        let mut errors = Vec::new();
        for g in op.enrollment_groups {
            let id = g.enrollment_group_id.clone();
            let etag = g.etag.clone();
            let r = match mode {
                BulkMode::Create => match self.store.get_group(&id).await {
                    Ok(Some(_)) => Err(Error::GroupAlreadyExists { id: id.clone() }),
                    Ok(None) => self.put_group(&id, g, None).await.map(|_| ()),
                    Err(e) => Err(e.into()),
                },
                BulkMode::Update => self.put_group(&id, g, None).await.map(|_| ()),
                BulkMode::UpdateIfMatch => {
                    let m = etag.unwrap_or_else(|| "*".into());
                    self.put_group(&id, g, Some(&m)).await.map(|_| ())
                }
                BulkMode::Delete => self.delete_group(&id, etag.as_deref()).await,
            };
            if let Err(error) = r {
                errors.push(BulkFailure { id, error });
            }
        }
        Ok(errors)
    }

    // ---------------------------------------------------------------- registration records

    pub async fn get_registration(&self, id: &str) -> Result<DeviceRegistrationState, Error> {
        self.store
            .get_registration(id)
            .await?
            .map(|r| r.state)
            .ok_or_else(|| Error::RegistrationNotFound { id: id.to_string() })
    }

    pub async fn delete_registration(&self, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        match self
            .store
            .delete_registration(id, Precondition::from_if_match(if_match))
            .await
        {
            Err(StoreError::NotFound { .. }) => {
                Err(Error::RegistrationNotFound { id: id.to_string() })
            }
            r => Ok(r?),
        }
    }

    /// Registration records of one group (or of every device when `group_id` is `None`).
    pub async fn query_registrations(
        &self,
        group_id: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<DeviceRegistrationState>, Error> {
        Ok(self.store.list_registrations(group_id, page).await?)
    }
}

#[derive(Clone, Copy)]
enum BulkMode {
    Create,
    Update,
    UpdateIfMatch,
    Delete,
}

fn bulk_mode(mode: &str) -> Result<BulkMode, Error> {
    match mode.to_ascii_lowercase().as_str() {
        "create" => Ok(BulkMode::Create),
        "update" => Ok(BulkMode::Update),
        "updateifmatchetag" => Ok(BulkMode::UpdateIfMatch),
        "delete" => Ok(BulkMode::Delete),
        _ => Err(Error::invalid(format!(
            "bulk mode '{mode}' is invalid; use create, update, updateIfMatchETag or delete"
        ))),
    }
}

fn check_bulk_size(n: usize) -> Result<(), Error> {
    if n == 0 || n > MAX_BULK_ITEMS {
        return Err(Error::invalid(format!(
            "a bulk operation takes 1 to {MAX_BULK_ITEMS} items; got {n}"
        )));
    }
    Ok(())
}
