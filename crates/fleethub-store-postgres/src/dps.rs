//! DPS records: individual enrollments, enrollment groups, registration records.

use crate::cached::Cached;
use crate::connect::in_tx;
use crate::docs::{self, check, decode, encode, get_doc, lock_row, lower, new_etag};
use crate::registry::write_device;
use crate::{PgStore, Result, db};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use fleethub_api::{DeviceRegistrationState, EnrollmentGroup, IndividualEnrollment, time::now_utc};
use fleethub_storage::{Assignment, DpsStore, Page, PageRequest, Precondition, RegistrationRecord};

const ENROLLMENTS: &str = "enrollments";
const GROUPS: &str = "enrollment_groups";

async fn put_enrollment(
    c: &impl GenericClient,
    mut e: IndividualEnrollment,
    cond: &Precondition,
) -> Result<IndividualEnrollment> {
    let key = lower(&e.registration_id);
    let current = lock_row(c, ENROLLMENTS, &key).await?;
    check(
        cond,
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
    let etag = new_etag();
    e.etag = Some(etag.clone());
    e.registration_state = None;
    let doc = encode(&e)?;
    docs::write(
        c,
        ENROLLMENTS,
        "enrollment",
        &e.registration_id,
        &key,
        cond,
        &etag,
        &doc,
    )
    .await?;
    Ok(e)
}

async fn put_group(
    c: &impl GenericClient,
    mut g: EnrollmentGroup,
    cond: &Precondition,
) -> Result<EnrollmentGroup> {
    let key = lower(&g.enrollment_group_id);
    let current = lock_row(c, GROUPS, &key).await?;
    check(
        cond,
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
    let etag = new_etag();
    g.etag = Some(etag.clone());
    let doc = encode(&g)?;
    docs::write(
        c,
        GROUPS,
        "enrollment group",
        &g.enrollment_group_id,
        &key,
        cond,
        &etag,
        &doc,
    )
    .await?;
    Ok(g)
}

async fn registration_where(
    c: &impl GenericClient,
    column: &str,
    value: &str,
) -> Result<Option<RegistrationRecord>> {
    let sql = format!("SELECT id_lower, operation_id, doc FROM registrations WHERE {column} = $1");
    let stmt = c.prepare_cached(&sql).await.map_err(db)?;
    match c.query_opt(&stmt, &[&value]).await.map_err(db)? {
        Some(r) => Ok(Some(RegistrationRecord {
            state: decode("registration", r.get(0), r.get(2))?,
            operation_id: r.get(1),
        })),
        None => Ok(None),
    }
}

async fn commit_assignment(c: &impl GenericClient, a: Assignment) -> Result<RegistrationRecord> {
    if let Some(dev) = a.device {
        write_device(c, dev, &Precondition::Any).await?;
    }
    let mut rec = a.registration;
    let key = lower(&rec.state.registration_id);
    let etag = new_etag();
    rec.state.etag = Some(etag.clone());
    let group = rec.state.enrollment_group_id.as_deref().map(lower);
    c.execute_c(
        "INSERT INTO registrations (id_lower, group_lower, operation_id, etag, doc)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id_lower) DO UPDATE SET group_lower = excluded.group_lower,
            operation_id = excluded.operation_id, etag = excluded.etag, doc = excluded.doc",
        &[&key, &group, &rec.operation_id, &etag, &encode(&rec.state)?],
    )
    .await
    .map_err(db)?;
    Ok(rec)
}

#[async_trait]
impl DpsStore for PgStore {
    async fn get_enrollment(&self, registration_id: &str) -> Result<Option<IndividualEnrollment>> {
        let c = self.conn().await?;
        get_doc(&c, ENROLLMENTS, "enrollment", &lower(registration_id)).await
    }

    async fn put_enrollment(
        &self,
        e: IndividualEnrollment,
        cond: Precondition,
    ) -> Result<IndividualEnrollment> {
        in_tx!(self, |tx| put_enrollment(&tx, e, &cond))
    }

    async fn delete_enrollment(&self, registration_id: &str, cond: Precondition) -> Result<()> {
        let key = lower(registration_id);
        in_tx!(self, |tx| docs::delete(
            &tx,
            ENROLLMENTS,
            "enrollment",
            &key,
            &cond
        ))
    }

    async fn list_enrollments(&self, page: PageRequest) -> Result<Page<IndividualEnrollment>> {
        let c = self.conn().await?;
        docs::list(&c, ENROLLMENTS, "enrollment", None, &page).await
    }

    async fn get_group(&self, group_id: &str) -> Result<Option<EnrollmentGroup>> {
        let c = self.conn().await?;
        get_doc(&c, GROUPS, "enrollment group", &lower(group_id)).await
    }

    async fn put_group(&self, g: EnrollmentGroup, cond: Precondition) -> Result<EnrollmentGroup> {
        in_tx!(self, |tx| put_group(&tx, g, &cond))
    }

    async fn delete_group(&self, group_id: &str, cond: Precondition) -> Result<()> {
        let key = lower(group_id);
        in_tx!(self, |tx| docs::delete(
            &tx,
            GROUPS,
            "enrollment group",
            &key,
            &cond
        ))
    }

    async fn list_groups(&self, page: PageRequest) -> Result<Page<EnrollmentGroup>> {
        let c = self.conn().await?;
        docs::list(&c, GROUPS, "enrollment group", None, &page).await
    }

    async fn get_registration(&self, registration_id: &str) -> Result<Option<RegistrationRecord>> {
        let c = self.conn().await?;
        registration_where(&c, "id_lower", &lower(registration_id)).await
    }

    async fn get_registration_by_operation(
        &self,
        operation_id: &str,
    ) -> Result<Option<RegistrationRecord>> {
        let c = self.conn().await?;
        registration_where(&c, "operation_id", operation_id).await
    }

    async fn delete_registration(&self, registration_id: &str, cond: Precondition) -> Result<()> {
        let key = lower(registration_id);
        in_tx!(self, |tx| docs::delete(
            &tx,
            "registrations",
            "registration",
            &key,
            &cond
        ))
    }

    async fn list_registrations(
        &self,
        group_id: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<DeviceRegistrationState>> {
        let group = group_id.map(lower);
        let c = self.conn().await?;
        let filter = group.as_deref().map(|g| ("group_lower", g));
        docs::list(&c, "registrations", "registration", filter, &page).await
    }

    async fn commit_assignment(&self, a: Assignment) -> Result<RegistrationRecord> {
        in_tx!(self, |tx| commit_assignment(&tx, a))
    }
}
