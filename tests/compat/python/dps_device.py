#!/usr/bin/env python3
"""DPS device provisioning with the official Python SDKs (azure-iot-device 2.14.0 over MQTT and
MQTT-over-WebSocket; enrollments made with azure-iothub-provisioningserviceclient 1.2.0).

Individual enrollment (explicit deviceId) over MQTT, individual enrollment over WebSocket,
symmetric-key group devices (derived keys) over both; re-registration; negative cases (wrong key,
disabled enrollment, key derived from another group key, unknown registration id, deleted
enrollment); registration records through the service client; cleanup.
Run by scripts/test.sh; configuration in _harness.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import (  # noqa: E402
    Config, Suite, derive_group_device_key, error_text, expect, http_status, random_key, unique_id,
)

from azure.iot.device import ProvisioningDeviceClient  # noqa: E402
from provisioningserviceclient import ProvisioningServiceClient  # noqa: E402
from provisioningserviceclient.models import (  # noqa: E402
    AttestationMechanism, EnrollmentGroup, IndividualEnrollment, SymmetricKeyAttestation,
)

SUITE = "py-dps-device"


def symmetric(primary):
    return AttestationMechanism(
        type="symmetricKey", symmetric_key=SymmetricKeyAttestation(primary_key=primary, secondary_key=random_key()))


def main():
    cfg = Config(SUITE)
    s = Suite(SUITE)
    psc = ProvisioningServiceClient.create_from_connection_string(cfg.dps_service_cs)

    def register(reg_id, key, websockets=False):
        kw = {"server_verification_cert": cfg.ca_pem}
        if websockets:
            kw["websockets"] = True
        client = ProvisioningDeviceClient.create_from_symmetric_key(
            provisioning_host=cfg.dps_host, registration_id=reg_id, id_scope=cfg.id_scope, symmetric_key=key, **kw)
        return client.register()

    def expect_assigned(result, device_id, substatus="initialAssignment"):
        st = result.registration_state
        expect(result.status == "assigned" and st is not None, "not assigned: %s" % result)
        expect((st.assigned_hub or "").lower() == cfg.hub_host.lower(),
               "assignedHub %r, want %r (HostName of the hub service connection string)" % (st.assigned_hub, cfg.hub_host))
        expect(st.device_id == device_id, "deviceId %r, want %r" % (st.device_id, device_id))
        if substatus:
            expect(st.sub_status == substatus, "substatus %r, want %r" % (st.sub_status, substatus))
        return "assignedHub=%s deviceId=%s substatus=%s" % (st.assigned_hub, st.device_id, st.sub_status)

    def expect_rejected(reg_id, key, want_status=None, allow_unassigned_result=False):
        try:
            result = register(reg_id, key)
        except Exception as e:  # noqa: BLE001 - any SDK error is a rejection; the status is checked below
            got = http_status(e)
            if want_status and got not in want_status:
                raise AssertionError("rejected with status %s, want one of %s: %s" % (got, want_status, error_text(e)))
            return "rejected: status=%s %s" % (got, error_text(e, 160))
        if allow_unassigned_result and result.status != "assigned":
            return "not assigned: status=%s" % result.status
        raise AssertionError("registration was accepted: %s" % result)

    # --- enrollments (service client) ---------------------------------------------------------
    ind_id, ind_key, ind_dev = unique_id("py-ind"), random_key(), unique_id("py-dev")
    ws_id, ws_key = unique_id("py-ws"), random_key()
    off_id, off_key = unique_id("py-off"), random_key()
    grp_id, grp_key = unique_id("py-grp"), random_key()
    members = [unique_id("py-gdev"), unique_id("py-gdev")]

    def create_individual(reg_id, key, **kw):
        out = psc.create_or_update(IndividualEnrollment.create(reg_id, symmetric(key), **kw))
        expect(out.registration_id == reg_id, "response registrationId %r" % out.registration_id)
        expect(out.etag, "response has no etag")
        s.cleanup("delete enrollment " + reg_id, lambda: psc.delete_individual_enrollment_by_param(reg_id))
        return "etag=%s" % out.etag

    ok = s.step("service: create individual enrollment %s (deviceId %s)" % (ind_id, ind_dev),
                lambda: create_individual(ind_id, ind_key, device_id=ind_dev))
    ok = s.step("service: create individual enrollment " + ws_id, lambda: create_individual(ws_id, ws_key)) and ok
    ok = s.step("service: create disabled individual enrollment " + off_id,
                lambda: create_individual(off_id, off_key, provisioning_status="disabled")) and ok

    def create_group():
        out = psc.create_or_update(EnrollmentGroup.create(grp_id, symmetric(grp_key)))
        expect(out.enrollment_group_id == grp_id, "response enrollmentGroupId %r" % out.enrollment_group_id)
        s.cleanup("delete group " + grp_id, lambda: psc.delete_enrollment_group_by_param(grp_id))

    ok = s.step("service: create enrollment group " + grp_id, create_group) and ok
    if not ok:
        s.finish()

    for reg_id in (ind_id, ws_id, *members):
        s.cleanup("delete registration " + reg_id, lambda r=reg_id: psc.delete_registration_state_by_param(r))

    # --- registrations ------------------------------------------------------------------------
    s.step("mqtt: register individual %s -> assigned, deviceId from the enrollment" % ind_id,
           lambda: expect_assigned(register(ind_id, ind_key), ind_dev))
    s.step("mqtt-ws: register individual %s over WebSocket -> assigned" % ws_id,
           lambda: expect_assigned(register(ws_id, ws_key, websockets=True), ws_id))
    s.step("mqtt: group device %s with derived key -> assigned" % members[0],
           lambda: expect_assigned(register(members[0], derive_group_device_key(grp_key, members[0])), members[0]))
    s.step("mqtt-ws: group device %s with derived key over WebSocket -> assigned" % members[1],
           lambda: expect_assigned(register(members[1], derive_group_device_key(grp_key, members[1]), websockets=True),
                                   members[1]))
    s.step("mqtt: re-register %s -> assigned again, same deviceId" % ind_id,
           lambda: expect_assigned(register(ind_id, ind_key), ind_dev, substatus=None))

    # --- negative cases -----------------------------------------------------------------------
    s.step("mqtt: wrong key -> rejected with 401", lambda: expect_rejected(ind_id, random_key(), want_status={401}))
    s.step("mqtt: disabled enrollment -> not assigned",
           lambda: expect_rejected(off_id, off_key, allow_unassigned_result=True))
    stranger = unique_id("py-gdev")
    s.step("mqtt: key derived from another group key -> rejected with 401",
           lambda: expect_rejected(stranger, derive_group_device_key(random_key(), stranger), want_status={401}))
    s.step("mqtt: unknown registration id -> rejected",
           lambda: expect_rejected(unique_id("py-nobody"), random_key(), want_status={401, 404}))

    # --- registration records (service client) ------------------------------------------------
    def record(reg_id, device_id):
        st = psc.get_registration_state(reg_id)
        expect(st.registration_id == reg_id, "registrationId %r" % st.registration_id)
        expect(st.status == "assigned", "status %r" % st.status)
        expect(st.device_id == device_id, "deviceId %r, want %r" % (st.device_id, device_id))
        expect((st.assigned_hub or "").lower() == cfg.hub_host.lower(), "assignedHub %r" % st.assigned_hub)
        return "status=%s assignedHub=%s etag=%s" % (st.status, st.assigned_hub, st.etag)

    s.step("service: registration record of " + ind_id, lambda: record(ind_id, ind_dev))
    s.step("service: registration record of group device " + members[0], lambda: record(members[0], members[0]))

    def group_records():
        # provisioningserviceclient 1.2.0's create_registration_state_query() passes arguments that
        # msrest 0.7 rejects, so call the generated operation (POST /registrations/{groupId}/query).
        found = [r.registration_id for r in psc._runtime_client.query_device_registration_states(grp_id)]
        missing = [m for m in members if m not in found]
        expect(not missing, "missing %s in %s" % (missing, found))
        expect(ind_id not in found, "individual enrollment %s listed under the group" % ind_id)
        return "%d records" % len(found)

    s.step("service: registration records of group " + grp_id, group_records)

    def delete_record():
        psc.delete_registration_state_by_param(ws_id)
        try:
            st = psc.get_registration_state(ws_id)
        except Exception as e:  # noqa: BLE001
            expect(http_status(e) == 404, "want 404 after delete: %s" % error_text(e))
            return "404 after delete"
        raise AssertionError("record still there after delete: %s" % st)

    s.step("service: delete registration record %s -> then 404" % ws_id, delete_record)

    def deleted_enrollment():
        psc.delete_individual_enrollment_by_param(ind_id)
        return expect_rejected(ind_id, ind_key)

    s.step("mqtt: enrollment deleted -> registration rejected", deleted_enrollment)
    s.finish()


if __name__ == "__main__":
    main()
