#!/usr/bin/env python3
"""DPS service API with the official Python service client azure-iothub-provisioningserviceclient
1.2.0 (REST api-version 2018-09-01-preview): individual enrollments and groups -- create, get,
update with etag (and a stale etag -> 412), attestation mechanism, generated keys, queries with
page size 1 (continuation), bulk create/delete, delete with a wrong etag -> 412, 404s; cleanup.
Run by scripts/test.sh; configuration in _harness.py.
"""
import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import Config, Suite, error_text, expect, http_status, random_key, unique_id  # noqa: E402

from provisioningserviceclient import BulkEnrollmentOperation, ProvisioningServiceClient, QuerySpecification  # noqa: E402
from provisioningserviceclient.models import (  # noqa: E402
    AttestationMechanism, DeviceCapabilities, EnrollmentGroup, IndividualEnrollment, InitialTwin,
    ReprovisionPolicy, SymmetricKeyAttestation,
)

SUITE = "py-dps-service"
MAX_PAGES = 500


def symmetric(primary=None, secondary=None):
    return AttestationMechanism(
        type="symmetricKey", symmetric_key=SymmetricKeyAttestation(primary_key=primary, secondary_key=secondary))


def expect_status(fn, want):
    try:
        v = fn()
    except Exception as e:  # noqa: BLE001
        got = http_status(e)
        expect(got == want, "want %d, got %s: %s" % (want, got, error_text(e)))
        return "%d" % got
    raise AssertionError("want %d, the call succeeded: %s" % (want, v))


def page_through(query, wanted_ids, id_of):
    """Reads every page of a query (page size 1) and returns (pages, ids seen)."""
    pages, seen = 0, []
    while query.has_next:
        try:
            page = query.next()
        except StopIteration:
            break
        pages += 1
        expect(len(page) <= 1, "page %d has %d items with page size 1" % (pages, len(page)))
        seen.extend(id_of(x) for x in page)
        expect(pages <= MAX_PAGES, "more than %d pages: continuation never ends?" % MAX_PAGES)
    missing = [w for w in wanted_ids if w not in seen]
    expect(not missing, "missing %s after %d pages" % (missing, pages))
    expect(pages >= len(wanted_ids), "%d pages for %d items" % (pages, len(wanted_ids)))
    return "%d pages, %d items" % (pages, len(seen))


def main():
    cfg = Config(SUITE)
    s = Suite(SUITE)
    psc = ProvisioningServiceClient.create_from_connection_string(cfg.dps_service_cs)

    # --- individual enrollment: create / get / update / attestation ---------------------------
    reg_id, dev_id, primary, secondary = unique_id("py-svc"), unique_id("py-svc-dev"), random_key(), random_key()
    state = {}

    def create():
        e = IndividualEnrollment.create(
            reg_id, symmetric(primary, secondary), device_id=dev_id,
            initial_twin=InitialTwin.create(tags={"site": "lab-1"}, desired_properties={"interval": 30}),
            device_capabilities=DeviceCapabilities.create(iot_edge=True),
            reprovision_policy=ReprovisionPolicy(update_hub_assignment=True, migrate_device_data=False))
        out = psc.create_or_update(e)
        s.cleanup("delete enrollment " + reg_id, lambda: psc.delete_individual_enrollment_by_param(reg_id))
        expect(out.registration_id == reg_id and out.device_id == dev_id, "ids in response: %r %r" % (
            out.registration_id, out.device_id))
        expect(out.etag, "no etag")
        expect(out.provisioning_status == "enabled", "provisioningStatus %r (default is enabled)" % out.provisioning_status)
        state["etag"] = out.etag
        return "etag=%s" % out.etag

    if not s.step("create individual enrollment %s (deviceId, initialTwin, iotEdge, reprovisionPolicy)" % reg_id,
                  create):
        s.finish()

    def get():
        e = psc.get_individual_enrollment(reg_id)
        expect(e.device_id == dev_id, "deviceId %r" % e.device_id)
        expect(e.capabilities and e.capabilities.iot_edge is True, "capabilities %r" % e.capabilities)
        expect(e.initial_twin and e.initial_twin.tags == {"site": "lab-1"}, "initialTwin.tags %r" % (
            e.initial_twin and e.initial_twin.tags))
        expect(e.initial_twin.desired_properties == {"interval": 30}, "initialTwin desired %r" % (
            e.initial_twin.desired_properties))
        rp = e.reprovision_policy
        expect(rp and rp.update_hub_assignment is True and rp.migrate_device_data is False, "reprovisionPolicy %r" % rp)
        expect(e.attestation and e.attestation.type == "symmetricKey", "attestation %r" % e.attestation)
        expect(e.etag == state["etag"], "etag %r, create returned %r" % (e.etag, state["etag"]))
        expect(e.created_date_time_utc is not None, "no createdDateTimeUtc")

    s.step("get individual enrollment: fields as created", get)

    def attestation():
        am = psc.get_individual_enrollment_attestation_mechanism(reg_id)
        sk = am.symmetric_key
        expect(am.type == "symmetricKey" and sk, "attestation %r" % am)
        expect(sk.primary_key == primary and sk.secondary_key == secondary, "keys differ from the ones created")

    s.step("get individual enrollment attestation mechanism: the keys", attestation)

    def update():
        e = psc.get_individual_enrollment(reg_id)
        e.provisioning_status = "disabled"
        out = psc.create_or_update(e)  # sends If-Match: <etag>
        expect(out.provisioning_status == "disabled", "provisioningStatus %r" % out.provisioning_status)
        expect(out.etag and out.etag != state["etag"], "etag did not change on update (%r)" % out.etag)
        state["old_etag"], state["etag"] = state["etag"], out.etag
        return "etag %s -> %s" % (state["old_etag"], out.etag)

    s.step("update individual enrollment with its etag -> new etag", update)

    def stale_update():
        e = psc.get_individual_enrollment(reg_id)
        e.etag = state.get("old_etag") or '"stale-etag"'
        e.provisioning_status = "enabled"
        return expect_status(lambda: psc.create_or_update(e), 412)

    s.step("update individual enrollment with a stale etag -> 412", stale_update)
    s.step("delete individual enrollment with a wrong etag -> 412",
           lambda: expect_status(lambda: psc.delete_individual_enrollment_by_param(reg_id, etag='"not-the-etag"'), 412))

    def generated_keys():
        gen_id = unique_id("py-gen")
        psc.create_or_update(IndividualEnrollment.create(gen_id, symmetric()))
        s.cleanup("delete enrollment " + gen_id, lambda: psc.delete_individual_enrollment_by_param(gen_id))
        sk = psc.get_individual_enrollment_attestation_mechanism(gen_id).symmetric_key
        for name, k in (("primary", sk.primary_key), ("secondary", sk.secondary_key)):
            expect(k, "no %s key generated" % name)
            n = len(base64.b64decode(k))
            expect(16 <= n <= 64, "%s key is %d bytes" % (name, n))
        expect(sk.primary_key != sk.secondary_key, "primary == secondary")
        return "primary %d bytes" % len(base64.b64decode(sk.primary_key))

    s.step("create individual enrollment without keys -> keys generated", generated_keys)
    s.step("get unknown individual enrollment -> 404",
           lambda: expect_status(lambda: psc.get_individual_enrollment(unique_id("py-none")), 404))

    # --- queries with page size 1 (x-ms-max-item-count / x-ms-continuation) --------------------
    q_ids = [unique_id("py-q") for _ in range(3)]

    def create_three():
        for q in q_ids:
            psc.create_or_update(IndividualEnrollment.create(q, symmetric(random_key(), random_key())))
            s.cleanup("delete enrollment " + q, lambda q=q: psc.delete_individual_enrollment_by_param(q))

    if s.step("create 3 more individual enrollments", create_three):
        s.step("query individual enrollments, page size 1 -> every page has 1 item, all found",
               lambda: page_through(psc.create_individual_enrollment_query(QuerySpecification("*"), page_size=1),
                                    q_ids + [reg_id], lambda x: x.registration_id), timeout=120)

    # --- enrollment groups --------------------------------------------------------------------
    grp_ids = [unique_id("py-sgrp") for _ in range(2)]
    gkey = random_key()

    def create_groups():
        for i, g in enumerate(grp_ids):
            out = psc.create_or_update(EnrollmentGroup.create(
                g, symmetric(gkey if i == 0 else random_key(), random_key()),
                initial_twin=InitialTwin.create(tags={"group": g})))
            expect(out.enrollment_group_id == g and out.etag, "response %r" % out)
            s.cleanup("delete group " + g, lambda g=g: psc.delete_enrollment_group_by_param(g))

    if s.step("create 2 enrollment groups", create_groups):
        def get_group():
            g = psc.get_enrollment_group(grp_ids[0])
            expect(g.enrollment_group_id == grp_ids[0], "id %r" % g.enrollment_group_id)
            expect(g.initial_twin and g.initial_twin.tags == {"group": grp_ids[0]}, "initialTwin %r" % g.initial_twin)
            expect(g.provisioning_status == "enabled", "provisioningStatus %r" % g.provisioning_status)

        s.step("get enrollment group", get_group)

        def group_attestation():
            am = psc.get_enrollment_group_attestation_mechanism(grp_ids[0])
            expect(am.symmetric_key and am.symmetric_key.primary_key == gkey, "attestation %r" % am)

        s.step("get enrollment group attestation mechanism: the keys", group_attestation)
        s.step("query enrollment groups, page size 1 -> all found",
               lambda: page_through(psc.create_enrollment_group_query(QuerySpecification("*"), page_size=1),
                                    grp_ids, lambda x: x.enrollment_group_id), timeout=120)

        def delete_group():
            psc.delete_enrollment_group_by_param(grp_ids[1])
            return expect_status(lambda: psc.get_enrollment_group(grp_ids[1]), 404)

        s.step("delete enrollment group -> then 404", delete_group)

    # --- bulk operations ----------------------------------------------------------------------
    bulk_ids = [unique_id("py-bulk") for _ in range(3)]

    def bulk(mode):
        items = [IndividualEnrollment.create(b, symmetric(random_key(), random_key())) for b in bulk_ids]
        res = psc.run_bulk_operation(BulkEnrollmentOperation(mode, items))
        expect(res.is_successful is True, "isSuccessful=%r errors=%r" % (
            res.is_successful, [(x.registration_id, x.error_code, x.error_status) for x in (res.errors or [])]))

    if s.step("bulk create 3 individual enrollments -> isSuccessful", lambda: bulk("create")):
        for b in bulk_ids:
            s.cleanup("delete enrollment " + b, lambda b=b: psc.delete_individual_enrollment_by_param(b))
        s.step("bulk-created enrollments can be read", lambda: [psc.get_individual_enrollment(b) for b in bulk_ids] and None)
        s.step("bulk delete them -> isSuccessful", lambda: bulk("delete"))
        s.step("bulk-deleted enrollment -> 404",
               lambda: expect_status(lambda: psc.get_individual_enrollment(bulk_ids[0]), 404))

    def delete_individual():
        psc.delete_individual_enrollment_by_param(reg_id)
        return expect_status(lambda: psc.get_individual_enrollment(reg_id), 404)

    s.step("delete individual enrollment -> then 404", delete_individual)
    s.finish()


if __name__ == "__main__":
    main()
