//! DPS records: individual enrollments, enrollment groups, registration records.

use super::cached::CachedStatements;
use super::{
    Assignment, DeviceRegistrationState, ENROLLMENTS, EnrollmentGroup, GROUPS,
    IndividualEnrollment, OptionalExtension, Page, PageRequest, Precondition, RegistrationRecord,
    Result, SqliteStore, async_trait, check, decode, docs, encode, get_doc, get_registration_row,
    get_row, lower, new_etag, now_utc, params, upsert, write_device,
};
use crate::DpsStore;

#[async_trait]
impl DpsStore for SqliteStore {
    async fn get_enrollment(&self, registration_id: &str) -> Result<Option<IndividualEnrollment>> {
        let key = lower(registration_id);
        self.pool
            .lookup(|c| get_doc(c, ENROLLMENTS, "enrollment", &key))
    }

    async fn put_enrollment(
        &self,
        mut e: IndividualEnrollment,
        cond: Precondition,
    ) -> Result<IndividualEnrollment> {
        let key = lower(&e.registration_id);
        self.pool
            .write(move |c| {
                let current = get_row(c, ENROLLMENTS, "id_lower", &key)?;
                check(
                    &cond,
                    "enrollment",
                    &e.registration_id,
                    current.as_ref().map(|r| r.0.as_str()),
                )?;
                let now = now_utc();
                let created = match &current {
                    Some((_, doc)) => decode::<IndividualEnrollment>("enrollment", &key, doc)?
                        .created_date_time_utc
                        .unwrap_or_else(|| now.clone()),
                    None => now.clone(),
                };
                e.created_date_time_utc = Some(created);
                e.last_updated_date_time_utc = Some(now);
                e.etag = Some(new_etag());
                e.registration_state = None;
                upsert(
                    c,
                    ENROLLMENTS,
                    &key,
                    e.etag.as_deref().unwrap_or(""),
                    &encode(&e)?,
                )?;
                Ok(e)
            })
            .await
    }

    async fn delete_enrollment(&self, registration_id: &str, cond: Precondition) -> Result<()> {
        let key = lower(registration_id);
        self.pool
            .write(move |c| docs::delete(c, ENROLLMENTS, "enrollment", &key, &cond))
            .await
    }

    async fn list_enrollments(&self, page: PageRequest) -> Result<Page<IndividualEnrollment>> {
        self.pool
            .read(move |c| docs::list(c, ENROLLMENTS, "id_lower", "enrollment", None, &page))
            .await
    }

    async fn get_group(&self, group_id: &str) -> Result<Option<EnrollmentGroup>> {
        let key = lower(group_id);
        self.pool
            .read(move |c| get_doc(c, GROUPS, "enrollment group", &key))
            .await
    }

    async fn put_group(
        &self,
        mut g: EnrollmentGroup,
        cond: Precondition,
    ) -> Result<EnrollmentGroup> {
        let key = lower(&g.enrollment_group_id);
        self.pool
            .write(move |c| {
                let current = get_row(c, GROUPS, "id_lower", &key)?;
                check(
                    &cond,
                    "enrollment group",
                    &g.enrollment_group_id,
                    current.as_ref().map(|r| r.0.as_str()),
                )?;
                let now = now_utc();
                let created = match &current {
                    Some((_, doc)) => decode::<EnrollmentGroup>("enrollment group", &key, doc)?
                        .created_date_time_utc
                        .unwrap_or_else(|| now.clone()),
                    None => now.clone(),
                };
                g.created_date_time_utc = Some(created);
                g.last_updated_date_time_utc = Some(now);
                g.etag = Some(new_etag());
                upsert(
                    c,
                    GROUPS,
                    &key,
                    g.etag.as_deref().unwrap_or(""),
                    &encode(&g)?,
                )?;
                Ok(g)
            })
            .await
    }

    async fn delete_group(&self, group_id: &str, cond: Precondition) -> Result<()> {
        let key = lower(group_id);
        self.pool
            .write(move |c| docs::delete(c, GROUPS, "enrollment group", &key, &cond))
            .await
    }

    async fn list_groups(&self, page: PageRequest) -> Result<Page<EnrollmentGroup>> {
        self.pool
            .read(move |c| docs::list(c, GROUPS, "id_lower", "enrollment group", None, &page))
            .await
    }

    async fn get_registration(&self, registration_id: &str) -> Result<Option<RegistrationRecord>> {
        let key = lower(registration_id);
        self.pool.lookup(|c| get_registration_row(c, &key))
    }

    async fn get_registration_by_operation(
        &self,
        operation_id: &str,
    ) -> Result<Option<RegistrationRecord>> {
        self.pool.lookup(|c| {
            let key: Option<String> = c
                .query_row_cached(
                    "SELECT id_lower FROM registrations WHERE operation_id = ?1",
                    params![operation_id],
                    |r| r.get(0),
                )
                .optional()?;
            match key {
                Some(k) => get_registration_row(c, &k),
                None => Ok(None),
            }
        })
    }

    async fn delete_registration(&self, registration_id: &str, cond: Precondition) -> Result<()> {
        let key = lower(registration_id);
        self.pool
            .write(move |c| docs::delete(c, "registrations", "registration", &key, &cond))
            .await
    }

    async fn list_registrations(
        &self,
        group_id: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<DeviceRegistrationState>> {
        let group = group_id.map(lower);
        self.pool
            .read(move |c| {
                let filter = group.as_deref().map(|g| ("group_lower", g));
                docs::list(
                    c,
                    "registrations",
                    "id_lower",
                    "registration",
                    filter,
                    &page,
                )
            })
            .await
    }

    async fn commit_assignment(&self, a: Assignment) -> Result<RegistrationRecord> {
        self.pool
            .write(move |c| {
                if let Some(dev) = a.device {
                    write_device(c, dev, &Precondition::Any)?;
                }
                let mut rec = a.registration;
                let key = lower(&rec.state.registration_id);
                rec.state.etag = Some(new_etag());
                let group = rec.state.enrollment_group_id.as_deref().map(lower);
                c.execute_cached(
                    "INSERT INTO registrations (id_lower, group_lower, operation_id, etag, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(id_lower) DO UPDATE SET group_lower = excluded.group_lower,
                        operation_id = excluded.operation_id, etag = excluded.etag, doc = excluded.doc",
                    params![key, group, rec.operation_id, rec.state.etag, encode(&rec.state)?],
                )?;
                Ok(rec)
            })
            .await
    }
}
