"""Transfers against the emulators: verification, repair, transient errors, write-only proof, STS polling."""

from __future__ import annotations

import base64
import hashlib
import socket
from typing import Any

import pytest

from compute import transfer
from compute.storage import DeliveryError, ObjectRecord, Store, VerificationError

from .conftest import GcsEmulator, MotoS3


def _stores(moto_s3: MotoS3, gcs: GcsEmulator, name: str) -> tuple[Store, Store]:
    source = Store(f"s3://{moto_s3.input_bucket}/{name}/input/20261201/", moto_s3.options("reader"))
    destination = Store(f"gs://{gcs.bucket}/{name}/raw/20261201/", gcs.options)
    admin = Store(f"s3://{moto_s3.input_bucket}/{name}/input/20261201/", moto_s3.options("admin"))
    for index in range(3):
        admin.write_bytes(f"trajectories/part-{index:05d}.parquet", bytes([index]) * (1000 + index))
    admin.write_bytes("vehicles/part-00000.parquet", b"vehicles" * 50)
    return source, destination


class _Events:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        self.records.append((event, fields))

    def objects(self, event: str) -> set[str]:
        return {f["object"] for e, f in self.records if e == event}


class TestInputUnreadable:
    @pytest.mark.parametrize("fault", ["wrong-secret", "closed-port"])
    def test_listing_failure_names_store(self, moto_s3: MotoS3, gcs: GcsEmulator, fault: str) -> None:
        source, destination = _stores(moto_s3, gcs, f"unreadable-{fault}")
        options = dict(moto_s3.options("reader"))
        if fault == "wrong-secret":
            options["secret"] = "not-the-secret"
        else:
            with socket.socket() as sock:  # a port on 127.0.0.1 that nothing listens on
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            options["endpoint_url"] = f"http://127.0.0.1:{port}"
            options["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 1}
        broken = Store(source.url, options)

        with pytest.raises(DeliveryError) as info:
            transfer.fetch_day(broken, destination, run_date="2026-12-01", mode="fsspec", retries=0, retry_delay_s=0.01)

        assert info.value.code == "input_unreadable"
        assert source.url in info.value.message("en")
        assert "認証情報" in info.value.message("ja")
        assert not destination.list()


class TestFetchVerification:
    def test_raw_objects_not_listed_are_removed(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        # Left in raw/ by an earlier delivery or an interrupted copy, an object would be validated with the day.
        source, destination = _stores(moto_s3, gcs, "extra")
        destination.write_bytes("trajectories/part-00009.parquet", b"from an earlier delivery")
        destination.write_bytes("notes/readme.txt", b"not delivered today")
        events = _Events()

        manifest = transfer.fetch_day(source, destination, run_date="2026-12-01", mode="fsspec", retries=1, retry_delay_s=0.01,
                                      on_event=events)

        assert sorted(destination.list()) == sorted(source.list())
        assert manifest.counts["removed"] == 2
        assert [f["count"] for e, f in events.records if e == "raw_extra_removed"] == [2]

    def test_corrupted_object_is_repaired(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        source, destination = _stores(moto_s3, gcs, "corrupt")
        events = _Events()
        expected = transfer.copy_objects(source, destination, list(source.list()), on_event=events)
        destination.write_bytes("trajectories/part-00001.parquet", b"corrupted between copy and verify")

        outcome = transfer.verify_and_repair(source, destination, expected, retries=2, retry_delay_s=0.01, on_event=events)

        assert outcome == {"verified": 4, "repaired": 1}
        assert events.objects("object_mismatch") == {"trajectories/part-00001.parquet"}
        assert transfer.find_mismatches(destination, expected) == {}

    def test_sts_mode_verifies_by_reading_both_sides(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        source, destination = _stores(moto_s3, gcs, "sts-verify")
        events = _Events()

        def run_transfer() -> dict[str, Any]:
            # Stands in for the service: copies everything, but one object arrives truncated.
            transfer.copy_objects(source, destination, list(source.list()))
            destination.write_bytes("vehicles/part-00000.parquet", b"vehicles")
            return {"status": "SUCCESS"}

        manifest = transfer.fetch_day(source, destination, run_date="2026-12-01", mode="sts", retries=1,
                                      run_transfer=run_transfer, retry_delay_s=0.01, on_event=events)

        assert manifest.counts["repaired"] == 1
        assert events.objects("object_mismatch") == {"vehicles/part-00000.parquet"}
        assert {o.path: o.size for o in manifest.objects} == source.list()

    def test_persistent_corruption_fails(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        source, destination = _stores(moto_s3, gcs, "persistent")
        expected = transfer.copy_objects(source, destination, list(source.list()))
        wrong = dict(expected)
        wrong["vehicles/part-00000.parquet"] = ObjectRecord("vehicles/part-00000.parquet", 400, "0" * 64, "")

        with pytest.raises(VerificationError, match="vehicles/part-00000.parquet"):
            transfer.verify_and_repair(source, destination, wrong, retries=1, retry_delay_s=0.01)

    def test_transient_error_survives_retry(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        source, destination = _stores(moto_s3, gcs, "transient")
        target = "transient/input/20261201/vehicles"
        events = _Events()

        def heal_on_failure(event: str, fields: dict[str, Any]) -> None:
            events(event, fields)
            if event in ("object_copy_failed", "object_mismatch"):
                moto_s3.heal()

        moto_s3.fail("GET", target, -1)
        try:
            manifest = transfer.fetch_day(source, destination, run_date="2026-12-01", mode="fsspec", retries=2,
                                          retry_delay_s=0.01, on_event=heal_on_failure)
        finally:
            hits = moto_s3.heal()

        assert "vehicles/part-00000.parquet" in events.objects("object_copy_failed")
        assert manifest.counts["objects"] == 4
        assert transfer.find_mismatches(destination, {o.path: o for o in manifest.objects}) == {}
        assert hits["rules"] == []


class TestWriteOnlyDelivery:
    def test_writer_cannot_list_or_read(self, moto_s3: MotoS3) -> None:
        store = Store(f"s3://{moto_s3.output_bucket}/output/probe/", moto_s3.options("writer"))
        store.fs.pipe(store.path("probe.txt"), b"probe")
        with pytest.raises(PermissionError):
            store.fs.cat_file(store.path("probe.txt"))
        with pytest.raises(PermissionError):
            store.fs.ls(store.path(""), refresh=True)

    def test_put_object_returns_checksum_proof(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        processed = Store(f"gs://{gcs.bucket}/proof/processed/20261201/", gcs.options)
        state = Store(f"gs://{gcs.bucket}/proof/temp/20261201/", gcs.options)
        processed.write_bytes("trips.parquet", b"trips" * 300)
        uploader = transfer.S3PutObjectUploader(f"s3://{moto_s3.output_bucket}/output/proof/20261201/", moto_s3.options("writer"))

        delivery = transfer.deliver_object(processed, uploader, state, "trips.parquet")

        body = b"trips" * 300
        assert delivery.checksum_sha256 == base64.b64encode(hashlib.sha256(body).digest()).decode()
        head = moto_s3.client("admin").head_object(Bucket=moto_s3.output_bucket, Key="output/proof/20261201/trips.parquet",
                                                   ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"] == delivery.checksum_sha256
        assert transfer.read_delivery(state, "trips.parquet") == delivery

    def test_response_with_wrong_checksum_is_rejected(self) -> None:
        body = b"payload"
        record = ObjectRecord("a.bin", len(body), hashlib.sha256(body).hexdigest(), base64.b64encode(hashlib.md5(body).digest()).decode())
        wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()

        with pytest.raises(VerificationError, match="ChecksumSHA256"):
            transfer.check_put_response(record, {"ChecksumSHA256": wrong, "ETag": '"x"'}, url="s3://b/a.bin")
        with pytest.raises(VerificationError, match="no ChecksumSHA256"):
            transfer.check_put_response(record, {"ETag": '"x"'}, url="s3://b/a.bin")


class TestRewrittenInput:
    def test_same_size_rewrite_found_by_etag(self, moto_s3: MotoS3, gcs: GcsEmulator) -> None:
        from compute.phases import InputChanges

        source, destination = _stores(moto_s3, gcs, "rewrite")
        manifest = transfer.fetch_day(source, destination, run_date="2026-12-01", mode="fsspec", retries=1, retry_delay_s=0.01)
        assert all(token.startswith("etag:") for token in manifest.sources.values())
        assert not InputChanges.compare(manifest, Store(source.url, source.options).list_versions(), source)

        admin = Store(source.url, moto_s3.options("admin"))
        admin.write_bytes("vehicles/part-00000.parquet", b"VEHICLES" * 50)  # same 400 bytes
        reader = Store(source.url, source.options)  # a new listing, as the next run makes
        changes = InputChanges.compare(manifest, reader.list_versions(), reader)
        assert changes.modified == ("vehicles/part-00000.parquet",)
        assert not changes.resized
