//! Typed operations of the DPS service API: individual enrollments, enrollment groups,
//! registration records, bulk operations and queries (see docs/protocol-notes.md,
//! "Service REST API and api-versions").

use crate::client::{Condition, ServiceClient, seg};
use crate::error::Error;
use crate::transport::Transport;
use fleethub_api::{
    BulkEnrollmentGroupOperation, BulkEnrollmentOperation, BulkEnrollmentOperationResult,
    DeviceRegistrationState, EnrollmentGroup, IndividualEnrollment,
};
use serde_json::json;

/// `mode` of a bulk enrollment operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkMode {
    Create,
    Update,
    UpdateIfMatchETag,
    Delete,
}

impl BulkMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkMode::Create => "create",
            BulkMode::Update => "update",
            BulkMode::UpdateIfMatchETag => "updateIfMatchETag",
            BulkMode::Delete => "delete",
        }
    }
}

impl<T: Transport> ServiceClient<T> {
    /// `GET /enrollments/{id}`.
    pub async fn get_enrollment(&self, id: &str) -> Result<IndividualEnrollment, Error> {
        self.get_as(&format!("/enrollments/{}", seg(id))).await
    }

    /// `GET /enrollments/{id}`, `None` when there is no such enrollment.
    pub async fn find_enrollment(&self, id: &str) -> Result<Option<IndividualEnrollment>, Error> {
        self.get_opt_as(&format!("/enrollments/{}", seg(id))).await
    }

    /// `PUT /enrollments/{id}`: create or replace.
    pub async fn put_enrollment(
        &self,
        enrollment: &IndividualEnrollment,
        cond: Condition<'_>,
    ) -> Result<IndividualEnrollment, Error> {
        let path = format!("/enrollments/{}", seg(&enrollment.registration_id));
        self.put_as(&path, enrollment, cond).await
    }

    /// `DELETE /enrollments/{id}`.
    pub async fn delete_enrollment(&self, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        self.delete(&format!("/enrollments/{}", seg(id)), if_match)
            .await
    }

    /// `POST /enrollments/query` with `*`, all pages.
    pub async fn query_enrollments(&self) -> Result<Vec<IndividualEnrollment>, Error> {
        decode_all(
            self.query_all("/enrollments/query").await?,
            "/enrollments/query",
        )
    }

    /// `POST /enrollments`: a bulk operation.
    pub async fn bulk_enrollments(
        &self,
        mode: BulkMode,
        enrollments: Vec<IndividualEnrollment>,
    ) -> Result<BulkEnrollmentOperationResult, Error> {
        let op = BulkEnrollmentOperation {
            mode: mode.as_str().to_string(),
            enrollments,
        };
        self.post_as("/enrollments", &op).await
    }

    /// `GET /enrollmentGroups/{id}`.
    pub async fn get_enrollment_group(&self, id: &str) -> Result<EnrollmentGroup, Error> {
        self.get_as(&format!("/enrollmentGroups/{}", seg(id))).await
    }

    /// `GET /enrollmentGroups/{id}`, `None` when there is no such group.
    pub async fn find_enrollment_group(&self, id: &str) -> Result<Option<EnrollmentGroup>, Error> {
        self.get_opt_as(&format!("/enrollmentGroups/{}", seg(id)))
            .await
    }

    /// `PUT /enrollmentGroups/{id}`: create or replace.
    pub async fn put_enrollment_group(
        &self,
        group: &EnrollmentGroup,
        cond: Condition<'_>,
    ) -> Result<EnrollmentGroup, Error> {
        let path = format!("/enrollmentGroups/{}", seg(&group.enrollment_group_id));
        self.put_as(&path, group, cond).await
    }

    /// `DELETE /enrollmentGroups/{id}`.
    pub async fn delete_enrollment_group(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Error> {
        self.delete(&format!("/enrollmentGroups/{}", seg(id)), if_match)
            .await
    }

    /// `POST /enrollmentGroups/query` with `*`, all pages.
    pub async fn query_enrollment_groups(&self) -> Result<Vec<EnrollmentGroup>, Error> {
        decode_all(
            self.query_all("/enrollmentGroups/query").await?,
            "/enrollmentGroups/query",
        )
    }

    /// `POST /enrollmentGroups`: a bulk operation.
    pub async fn bulk_enrollment_groups(
        &self,
        mode: BulkMode,
        enrollment_groups: Vec<EnrollmentGroup>,
    ) -> Result<BulkEnrollmentOperationResult, Error> {
        let op = BulkEnrollmentGroupOperation {
            mode: mode.as_str().to_string(),
            enrollment_groups,
        };
        self.post_as("/enrollmentGroups", &op).await
    }

    /// `GET /registrations/{id}`: a device's registration record.
    pub async fn get_registration(&self, id: &str) -> Result<DeviceRegistrationState, Error> {
        self.get_as(&format!("/registrations/{}", seg(id))).await
    }

    /// `POST /registrations/{id}/simulate` (fleethub): the dry run of a registration with the
    /// device key `key` (checked when given); nothing is created.
    pub async fn simulate_registration(
        &self,
        id: &str,
        key: Option<&str>,
    ) -> Result<serde_json::Value, Error> {
        let body = match key {
            Some(k) => json!({ "key": k }),
            None => json!({}),
        };
        self.post(&format!("/registrations/{}/simulate", seg(id)), &body)
            .await
    }

    /// `DELETE /registrations/{id}`.
    pub async fn delete_registration(&self, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        self.delete(&format!("/registrations/{}", seg(id)), if_match)
            .await
    }

    /// `POST /registrations/{groupId}/query`: the registration records of a group, all pages.
    pub async fn query_group_registrations(
        &self,
        group_id: &str,
    ) -> Result<Vec<DeviceRegistrationState>, Error> {
        let path = format!("/registrations/{}/query", seg(group_id));
        decode_all(
            self.query_pages(&path, &json!({"query": "*"})).await?,
            &path,
        )
    }
}

/// Decodes every item of a query answer.
pub(crate) fn decode_all<R: serde::de::DeserializeOwned>(
    items: Vec<serde_json::Value>,
    path: &str,
) -> Result<Vec<R>, Error> {
    items
        .into_iter()
        .map(|v| {
            serde_json::from_value(v).map_err(|source| Error::Shape {
                operation: format!("POST {path}"),
                source,
            })
        })
        .collect()
}
