"""Siemens twix → ISMRMRD acquisitions, checked against twixtools and BART.

Every acquisition is compared field by field with what twixtools reads from
the same readout (its ctypes MDH definitions, not ours), the flag mapping
with a table written from siemens_to_ismrmrd's ``getAcquisition``, the
directions with twixtools' own quaternion code, and the k-space of a real
file with BART's independent ``twixread``.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import twixtools
from twixtools.quat import quaternion_to_directions

from pipeline.errors import UnreadableInput
from pipeline.raw.blocks import AcquisitionBlock, WaveformBlock
from pipeline.raw.ismrmrd_out import write_ismrmrd
from pipeline.raw.mdh import (
    CHANNEL_HEADER_DTYPE,
    SCAN_HEADER_DTYPE,
    VB17_MDH_DTYPE,
)
from pipeline.raw.twix import (
    SYNCDATA_WAVEFORM_ID,
    VB,
    VD,
    TwixFile,
    measurement_blocks,
    open_twix,
)
from pipeline.samples.twix import (
    SyntheticMeasurement,
    expected_kspace,
    protocol_header,
    write_vb17_twix,
    write_vd_twix,
)
from tests.reference import ROOT, needs_reference, reference_marks

REFERENCE = ROOT / "twix"

# siemens_to_ismrmrd getAcquisition: Siemens flag name -> ISMRMRD flag bit (constant - 1)
SIEMENS_TO_ISMRMRD = {
    "NOISEADJSCAN": [18],
    "FIRSTSCANINSLICE": [6],
    "LASTSCANINSLICE": [7],
    "LASTSCANINMEAS": [13, 24],
    "REFLECT": [21],
    "PHASCOR": [23],
    "RTFEEDBACK": [22, 27],
    "HPFEEDBACK": [25],
    "RETRO_DUMMYSCAN": [26],
    "RAWDATACORRECTION": [28],
    "SYNCDATA": [26],
    "RETRO_ENDOFMEAS": [24],
    "REFPHASESTABSCAN": [29],
    "PHASESTABSCAN": [30],
}


def expected_flags(names: list[str]) -> int:
    bits = {bit for name in names for bit in SIEMENS_TO_ISMRMRD.get(name, [])}
    if "PATREFANDIMASCAN" in names:
        bits.add(20)
    elif "PATREFSCAN" in names:
        bits.add(19)
    return sum(1 << b for b in bits)


def acquisition_rows(twix: TwixFile, index: int = 0, **kw: int) -> np.ndarray:
    blocks = list(measurement_blocks(twix, twix.measurements[index], **kw))
    rows = [b.rows for b in blocks if isinstance(b, AcquisitionBlock)]
    return np.concatenate(rows) if rows else np.zeros(0)


def image_mdbs(scan: dict[str, object]) -> list[twixtools.mdb.Mdb]:
    return [
        m
        for m in scan["mdb"]  # type: ignore[attr-defined]
        if not m.is_flag_set("SYNCDATA") and not m.is_flag_set("ACQEND")
    ]


def assert_matches_twixtools(
    rows: np.ndarray, mdbs: list[twixtools.mdb.Mdb], dwell_us: float
) -> None:
    assert len(rows) == len(mdbs)
    for row, mdb in zip(rows, mdbs, strict=True):
        head, mdh = row["head"], mdb.mdh
        data = (
            row["data"]
            .view(np.complex64)
            .reshape(head["active_channels"], head["number_of_samples"])
        )
        assert np.array_equal(data.view(np.uint32), np.ascontiguousarray(mdb.data).view(np.uint32))
        assert row["traj"].size == 0 and head["trajectory_dimensions"] == 0
        assert head["version"] == 1
        assert head["flags"] == expected_flags(mdb.get_active_flags())
        assert head["scan_counter"] == mdh.ScanCounter
        assert head["acquisition_time_stamp"] == mdh.TimeStamp
        assert head["physiology_time_stamp"][0] == mdh.PMUTimeStamp
        assert head["number_of_samples"] == mdh.SamplesInScan
        assert head["active_channels"] == mdh.UsedChannels
        assert head["discard_pre"] == mdh.CutOff.Pre and head["discard_post"] == mdh.CutOff.Post
        assert head["center_sample"] == mdh.CenterCol
        if not mdb.is_flag_set("NOISEADJSCAN"):
            assert head["sample_time_us"] == np.float32(dwell_us)
        idx = head["idx"]
        counter = mdh.Counter
        assert (idx["kspace_encode_step_1"], idx["kspace_encode_step_2"]) == (
            counter.Lin,
            counter.Par,
        )
        assert (idx["average"], idx["slice"], idx["contrast"]) == (
            counter.Ave,
            counter.Sli,
            counter.Eco,
        )
        assert (idx["phase"], idx["repetition"], idx["set"], idx["segment"]) == (
            counter.Phs,
            counter.Rep,
            counter.Set,
            counter.Seg,
        )
        assert list(idx["user"][:5]) == [
            counter.Ida,
            counter.Idb,
            counter.Idc,
            counter.Idd,
            counter.Ide,
        ]
        assert list(idx["user"][5:7]) == [mdh.CenterLin, mdh.CenterPar]
        assert np.array_equal(
            head["position"],
            np.float32(
                [mdh.SliceData.SlicePos.Sag, mdh.SliceData.SlicePos.Cor, mdh.SliceData.SlicePos.Tra]
            ),
        )
        w, x, y, z = (float(v) for v in mdh.SliceData.Quaternion)
        phase, read, slice_ = quaternion_to_directions([x, y, z, w])
        np.testing.assert_allclose(head["read_dir"], read, atol=1e-6)
        np.testing.assert_allclose(head["phase_dir"], phase, atol=1e-6)
        np.testing.assert_allclose(head["slice_dir"], slice_, atol=1e-6)
        ids = (
            [c.ChannelId for c in mdb.channel_hdr]
            if mdb.channel_hdr
            else list(range(mdh.UsedChannels))
        )
        assert head["channel_mask"][0] == sum(1 << i for i in ids)
        assert head["user_int"][7] == mdh.TimeSinceLastRF


# ---------------------------------------------------------------------------
# Real files


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=reference_marks("twix", n)) for n in ("gre.dat", "epi.dat")]
)
def test_reference_files_match_twixtools_acquisition_by_acquisition(name: str) -> None:
    path = REFERENCE / name
    twix = open_twix(path)
    (scan,) = twixtools.read_twix(str(path), keep_acqend=True, verbose=False)
    assert twix.version == VD and len(twix.measurements) == 1
    meas = twix.measurements[0]
    assert meas.header_bytes == scan["hdr_str"].tobytes()
    assert meas.meas_id == scan["raidfile_hdr"]["measId_"]
    assert meas.protocol_name == scan["raidfile_hdr"]["protName_"].decode()
    assert not meas.is_noise
    mdbs = image_mdbs(scan)
    assert meas.acquisitions == len(mdbs)
    rows = acquisition_rows(twix, block_rows=7)  # several blocks, one partial
    dwell = scan["hdr"]["MeasYaps"]["sRXSPEC"]["alDwellTime"][0] / 1000
    assert_matches_twixtools(rows, mdbs, dwell)
    assert set(rows["head"]["measurement_uid"]) == {meas.meas_id}
    assert set(rows["head"]["available_channels"]) == {
        int(scan["hdr"]["Meas"]["iMaxNoOfRxChannels"])
    }
    table = [scan["mdb"][0].mdh.PTABPosX, scan["mdb"][0].mdh.PTABPosY, scan["mdb"][0].mdh.PTABPosZ]
    assert list(rows["head"]["patient_table_position"][0]) == table


@needs_reference("twix", "gre.dat")
@pytest.mark.bart
@pytest.mark.skipif(shutil.which("bart") is None, reason="bart not installed")
def test_reference_kspace_matches_bart_twixread(tmp_path: Path) -> None:
    path = REFERENCE / "gre.dat"
    subprocess.run(
        ["bart", "twixread", "-A", str(path), str(tmp_path / "ks")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    dims = [int(v) for v in (tmp_path / "ks.hdr").read_text().splitlines()[1].split()]
    bart = np.fromfile(tmp_path / "ks.cfl", dtype=np.complex64).reshape(dims[::-1]).squeeze().T
    rows = acquisition_rows(open_twix(path))
    ours = np.zeros_like(bart)  # (read, line, coil)
    for row in rows:
        head = row["head"]
        data = row["data"].view(np.complex64).reshape(head["active_channels"], -1)
        ours[:, head["idx"]["kspace_encode_step_1"], :] = data.T
    assert ours.shape == (320, 160, 2)
    assert np.array_equal(ours, bart)


@needs_reference("twix", "gre.dat")
def test_a_noise_and_an_image_measurement_in_one_file(tmp_path: Path) -> None:
    (image,) = twixtools.read_twix(str(REFERENCE / "gre.dat"), keep_acqend=True, verbose=False)
    noise = copy.copy(image)
    noise["mdb"] = []
    for mdb in image["mdb"][:6]:
        local = mdb.convert_to_local()
        local.clear_all_flags()
        local.add_flag("NOISEADJSCAN")
        noise["mdb"].append(local)
    noise["raidfile_hdr"] = image["raidfile_hdr"].copy()
    noise["raidfile_hdr"]["measId_"] = 357
    noise["raidfile_hdr"]["protName_"] = b"AdjCoilSens"
    path = tmp_path / "two.dat"
    twixtools.write_twix([noise, image], str(path))

    twix = open_twix(path)
    assert [(m.meas_id, m.is_noise, m.acquisitions) for m in twix.measurements] == [
        (357, True, 6),
        (358, False, 160),
    ]
    reread = twixtools.read_twix(str(path), keep_acqend=True, verbose=False)
    for index, scan in enumerate(reread):
        rows = acquisition_rows(twix, index)
        assert_matches_twixtools(rows, image_mdbs(scan), 11.6)
    noise_rows = acquisition_rows(twix, 0)
    # siemens_to_ismrmrd: AdjCoilSens noise is sampled at 5 us
    assert set(noise_rows["head"]["sample_time_us"]) == {np.float32(5.0)}
    assert set(noise_rows["head"]["flags"]) == {1 << 18}


# ---------------------------------------------------------------------------
# Synthetic files


def test_mdh_layouts_match_twixtools_ctypes() -> None:
    from twixtools import mdh_def

    assert VB17_MDH_DTYPE.itemsize == 128 == mdh_def.ctypes.sizeof(mdh_def.VB17_header)
    assert SCAN_HEADER_DTYPE.itemsize == 192 == mdh_def.ctypes.sizeof(mdh_def.Scan_header)
    assert CHANNEL_HEADER_DTYPE.itemsize == 32 == mdh_def.ctypes.sizeof(mdh_def.Channel_header)


def test_synthetic_vd_with_calibration_lines_and_syncdata(tmp_path: Path) -> None:
    path = tmp_path / "vd.dat"
    meas = SyntheticMeasurement(
        channels=3, samples=32, lines=6, slices=2, ref_lines=2, syncdata_every=4
    )
    write_vd_twix(path, [meas])
    twix = open_twix(path)
    (info,) = twix.measurements
    assert (info.acquisitions, info.syncdata, info.is_noise) == (12, 3, False)
    assert info.patient_name == meas.patient_name  # PHI, kept for the runner's subject lookup
    (scan,) = twixtools.read_twix(str(path), keep_acqend=True, verbose=False, parse_geometry=False)
    blocks = list(measurement_blocks(twix, info, block_rows=5))
    rows = np.concatenate([b.rows for b in blocks if isinstance(b, AcquisitionBlock)])
    assert_matches_twixtools(rows, image_mdbs(scan), meas.dwell_time_ns / 1000)
    calibration = (rows["head"]["flags"] & (1 << 19)) != 0
    assert list(rows["head"]["idx"]["kspace_encode_step_1"][calibration]) == [0, 1, 0, 1]

    waves = np.concatenate([b.rows for b in blocks if isinstance(b, WaveformBlock)])
    syncs = [m for m in scan["mdb"] if m.is_flag_set("SYNCDATA")]
    assert len(waves) == len(syncs) == 3
    for wave, sync, before in zip(waves, syncs, [4, 8, 12], strict=True):
        assert wave["head"]["waveform_id"] == SYNCDATA_WAVEFORM_ID
        assert wave["head"]["scan_counter"] == before
        assert wave["head"]["time_stamp"] == sync.mdh.TimeStamp
        assert wave["data"].tobytes() == sync.data.tobytes()


def test_pmu_packets_become_physiology_waveforms_as_twixtools_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "pmu.dat"
    meas = SyntheticMeasurement(channels=2, samples=16, lines=6, slices=2, pmu_every=3)
    write_vd_twix(path, [meas])
    twix = open_twix(path)
    assert twix.measurements[0].syncdata == 4
    blocks = list(measurement_blocks(twix, twix.measurements[0], block_rows=4))
    waves = np.concatenate([b.rows for b in blocks if isinstance(b, WaveformBlock)])
    # per packet: ECG (2 leads + trigger), PULS, RESP; the first packet is the learning phase
    assert list(waves["head"]["waveform_id"]) == [5, 6, 7] + [0, 1, 2] * 3
    assert list(waves["head"]["channels"]) == [3, 2, 2] * 4
    assert list(waves["head"]["number_of_samples"]) == [20, 10, 5] * 4
    assert list(waves["head"]["scan_counter"][::3]) == [3, 6, 9, 12]
    assert set(waves["head"]["measurement_uid"]) == {meas.meas_id}
    np.testing.assert_allclose(waves["head"]["sample_time_us"][:3], [100.0, 200.0, 400.0])

    (scan,) = twixtools.read_twix(str(path), verbose=False, parse_geometry=False)
    pmu = scan["pmu"]

    def ours(waveform_id: int, channel: int) -> np.ndarray:
        picked = [
            w["data"].reshape(w["head"]["channels"], -1)[channel]
            for w in waves
            if w["head"]["waveform_id"] == waveform_id
        ]
        return np.concatenate(picked)

    for key, waveform_id, channel, trigger_channel in [
        ("ECG1", 0, 0, 2),
        ("ECG2", 0, 1, 2),
        ("PULS", 1, 0, 1),
        ("RESP", 2, 0, 1),
    ]:
        assert np.array_equal(ours(waveform_id, channel) / 4096.0, pmu.signal[key]), key
        assert np.array_equal(ours(waveform_id + 5, channel) / 4096.0, pmu.signal["LEARN_" + key])
        if not key.startswith("ECG"):
            assert np.array_equal(ours(waveform_id, trigger_channel).astype(bool), pmu.trigger[key])
    ecg_trigger = pmu.trigger["ECG1"] | pmu.trigger["ECG2"]
    assert np.array_equal(ours(0, 2).astype(bool), ecg_trigger)
    timestamps = [w["head"]["time_stamp"] for w in waves if w["head"]["waveform_id"] == 1]
    assert timestamps == [2060, 2090, 2120]


def test_xa_pmu_packets_are_kept_verbatim_and_xa_noise_is_sampled_at_5_us(tmp_path: Path) -> None:
    """XA (VA61+) PMU packets have another layout: kept whole rather than misread."""
    path = tmp_path / "xa.dat"
    common = {
        "channels": 2,
        "samples": 64,
        "lines": 3,
        "slices": 1,
        "software_version": "syngo MR XA30",
    }
    write_vd_twix(
        path,
        [
            SyntheticMeasurement(noise=True, meas_id=1, **common),  # type: ignore[arg-type]
            SyntheticMeasurement(pmu_every=1, meas_id=2, **common),  # type: ignore[arg-type]
        ],
    )
    twix = open_twix(path)
    noise = acquisition_rows(twix, 0)
    assert set(noise["head"]["sample_time_us"]) == {np.float32(5.0)}
    blocks = list(measurement_blocks(twix, twix.measurements[1]))
    waves = np.concatenate([b.rows for b in blocks if isinstance(b, WaveformBlock)])
    assert list(waves["head"]["waveform_id"]) == [SYNCDATA_WAVEFORM_ID] * 3
    assert waves[1]["data"].tobytes()[4:11] == b"PMUData"


def test_vb17_channel_mdhs_make_one_acquisition(tmp_path: Path) -> None:
    path = tmp_path / "vb.dat"
    meas = SyntheticMeasurement(channels=4, samples=48, lines=5, slices=2, meas_id=77)
    write_vb17_twix(path, meas)
    twix = open_twix(path)
    assert twix.version == VB
    (info,) = twix.measurements
    assert (info.acquisitions, info.meas_id, info.protocol_name) == (10, 77, meas.protocol_name)
    assert info.patient_name == ""  # VB17 files have no table with the name
    rows = acquisition_rows(twix)
    assert len(rows) == 10  # not 10 readouts x 4 channel MDHs
    (scan,) = twixtools.read_twix(str(path), keep_acqend=True, verbose=False, parse_geometry=False)
    assert_matches_twixtools(rows, image_mdbs(scan), meas.dwell_time_ns / 1000)
    assert set(rows["head"]["active_channels"]) == {4}
    assert set(rows["head"]["measurement_uid"]) == {77}
    assert list(rows["head"]["patient_table_position"][0]) == [0.0, 0.0, 1234.0]
    assert list(rows["head"]["user_int"][0]) == [10, 11, 12, 13, 0, 0, 0, 1234]


def test_a_noise_measurement_samples_time_from_its_length(tmp_path: Path) -> None:
    path = tmp_path / "noise.dat"
    write_vd_twix(path, [SyntheticMeasurement(noise=True, samples=256, lines=3, slices=1)])
    twix = open_twix(path)
    assert twix.measurements[0].is_noise
    rows = acquisition_rows(twix)
    # siemens_to_ismrmrd, VD: int(76800 / samples) / 10
    assert set(rows["head"]["sample_time_us"]) == {np.float32(30.0)}


# ---------------------------------------------------------------------------
# Bad input


def whole_vd(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "whole.dat"
    write_vd_twix(
        path, [SyntheticMeasurement(noise=True, lines=2, slices=1), SyntheticMeasurement()]
    )
    return path, path.read_bytes()


def cut(tmp_path: Path, data: bytes, size: int) -> Path:
    path = tmp_path / f"cut{size}.dat"
    path.write_bytes(data[:size])
    return path


def test_vd_cut_short_anywhere_says_what_is_missing(tmp_path: Path) -> None:
    path, data = whole_vd(tmp_path)
    twix = open_twix(path)
    first, second = twix.measurements
    end = second.offset + second.length
    points = {
        "inside the multi-raid table": 5000,
        "inside the first protocol header": first.offset + 1000,
        "inside the second protocol header": second.offset + 100,
        "inside a readout": second.data_offset + 5000,
        "just before ACQEND": end - 300,
    }
    for where, size in points.items():
        with pytest.raises(UnreadableInput) as caught:
            open_twix(cut(tmp_path, data, size))
        message = str(caught.value)
        assert "ends" in message and "early" in message and "cut short" in message, where
        if size >= second.offset:
            assert f"measurement 2 declares {second.length:,} bytes" in message, where
            assert f"the file ends {end - size:,} bytes early" in message, where
        elif size >= first.offset:
            assert f"measurement 1 declares {first.length:,} bytes" in message, where
        else:
            assert "multi-raid header declares 9,736 bytes" in message, where
        assert "DOE" not in message


def test_vb17_cut_inside_a_readout_or_before_acqend(tmp_path: Path) -> None:
    path = tmp_path / "vb.dat"
    meas = SyntheticMeasurement(channels=2, samples=32, lines=4, slices=1)
    write_vb17_twix(path, meas)
    data = path.read_bytes()
    header = len(protocol_header(meas))
    readout = 2 * (128 + 8 * 32)
    with pytest.raises(
        UnreadableInput, match=r"readout 3 at byte .* the file ends 100 bytes early"
    ):
        open_twix(cut(tmp_path, data, header + 3 * readout - 100))
    with pytest.raises(UnreadableInput, match=r"without its end-of-acquisition marker \(ACQEND\)"):
        open_twix(cut(tmp_path, data, header + 4 * readout))
    with pytest.raises(
        UnreadableInput, match=r"protocol header declares [\d,]+ bytes, the file ends"
    ):
        open_twix(cut(tmp_path, data, header - 10))


def test_a_file_cut_after_opening_fails_mid_stream_and_leaves_no_output(tmp_path: Path) -> None:
    path, data = whole_vd(tmp_path)
    twix = open_twix(path)
    second = twix.measurements[1]
    readout = 192 + 4 * (32 + 8 * 64)  # the default synthetic shape
    path.write_bytes(data[: second.data_offset + readout + 1000])  # cut while the runner converts
    out = tmp_path / "out" / "converted.h5"
    missing = f"{readout - 1000:,}"
    with pytest.raises(
        UnreadableInput, match=f"readout 2 at byte .* the file ends {missing} bytes early"
    ):
        write_ismrmrd(out, "<ismrmrdHeader/>", measurement_blocks(twix, second))
    assert list(out.parent.iterdir()) == []


def test_random_bytes_are_not_twix(tmp_path: Path) -> None:
    path = tmp_path / "random.dat"
    path.write_bytes(np.random.default_rng(3).bytes(50_000))
    with pytest.raises(UnreadableInput, match="not a Siemens twix file"):
        open_twix(path)
    (tmp_path / "tiny.dat").write_bytes(b"abc")
    with pytest.raises(UnreadableInput, match="too short"):
        open_twix(tmp_path / "tiny.dat")


def test_an_unknown_layout_names_what_was_found(tmp_path: Path) -> None:
    header = protocol_header(SyntheticMeasurement())
    odd = tmp_path / "odd.dat"
    odd.write_bytes((2**31).to_bytes(4, "little") * 2 + b"\x01" * 24 + header)
    with pytest.raises(
        UnreadableInput,
        match=r"unknown twix version: a Siemens protocol header \(Config\) at byte 40",
    ):
        open_twix(odd)
    empty_table = tmp_path / "empty_table.dat"
    empty_table.write_bytes(b"\x00" * 10240 + header)
    with pytest.raises(UnreadableInput, match="multi-raid header that lists no measurement"):
        open_twix(empty_table)


def test_open_twix_reads_only_headers_of_a_large_measurement(tmp_path: Path) -> None:
    """The walk is sequential over MDHs: counts right for many readouts and blocks bounded."""
    path = tmp_path / "many.dat"
    write_vd_twix(path, [SyntheticMeasurement(channels=2, samples=16, lines=50, slices=30)])
    twix = open_twix(path)
    assert twix.measurements[0].acquisitions == 1500
    sizes = [
        len(b)
        for b in measurement_blocks(twix, twix.measurements[0], block_rows=512, block_bytes=2**20)
    ]
    assert sum(sizes) == 1500 and max(sizes) <= 512


def _blocks_of(twix: TwixFile) -> Iterator[AcquisitionBlock | WaveformBlock]:
    for meas in twix.measurements:
        yield from measurement_blocks(twix, meas)


@pytest.mark.ismrmrd_tools
def test_ismrmrd_recon_reads_converted_gre(tmp_path: Path) -> None:
    """ISMRMRD's C++ library (Debian's HDF5) reconstructs what we wrote as numpy does."""
    if shutil.which("ismrmrd_recon_cartesian_2d") is None:
        pytest.skip("ismrmrd-tools not installed")
    path = tmp_path / "vd.dat"
    meas = SyntheticMeasurement(channels=2, samples=64, lines=32, slices=1)
    write_vd_twix(path, [meas])
    twix = open_twix(path)
    xml = (
        '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        "<experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz>"
        "</experimentalConditions><encoding><encodedSpace><matrixSize><x>64</x><y>32</y><z>1</z></matrixSize>"
        "<fieldOfView_mm><x>200</x><y>200</y><z>5</z></fieldOfView_mm></encodedSpace>"
        "<reconSpace><matrixSize><x>32</x><y>32</y><z>1</z></matrixSize>"
        "<fieldOfView_mm><x>100</x><y>200</y><z>5</z></fieldOfView_mm></reconSpace>"
        "<encodingLimits/><trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"
    )
    out = tmp_path / "vd.h5"
    write_ismrmrd(out, xml, _blocks_of(twix))
    done = subprocess.run(
        ["ismrmrd_recon_cartesian_2d", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-500:]
    rx, ry = meas.samples // 2, meas.lines
    with h5py.File(out, "r") as handle:
        cpp = handle["dataset/cpp/data"][:].reshape(ry, rx).T.astype(np.float64)
    # The same recon in numpy from the samples the generator wrote (as
    # test_samples_twix does): FFTW's unnormalised backward FFT between two
    # fftshifts, root sum of squares, the readout's oversampling cropped.
    kspace = expected_kspace(meas)[0, 0, :, 0].transpose(1, 2, 0).astype(np.complex128)
    coils = np.fft.fftshift(np.fft.ifft2(np.fft.fftshift(kspace, axes=(1, 2))), axes=(1, 2))
    coils *= meas.samples * meas.lines
    offset = (meas.samples - rx) // 2
    ours = np.sqrt((np.abs(coils[:, offset : offset + rx, :]) ** 2).sum(axis=0))
    np.testing.assert_allclose(cpp, ours, rtol=1e-4, atol=1e-4 * ours.max())


@needs_reference("twix", "gre.dat")
@pytest.mark.ismrmrd_tools
def test_ismrmrd_recon_of_converted_gre_is_the_phantom_twixtools_data_gives(tmp_path: Path) -> None:
    """ISMRMRD's C++ recon of our gre.dat output equals a numpy recon of twixtools' samples."""
    if shutil.which("ismrmrd_recon_cartesian_2d") is None:
        pytest.skip("ismrmrd-tools not installed")
    path = REFERENCE / "gre.dat"
    xml = (
        '<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
        "<experimentalConditions><H1resonanceFrequency_Hz>123000000</H1resonanceFrequency_Hz>"
        "</experimentalConditions><encoding><encodedSpace><matrixSize><x>320</x><y>160</y>"
        "<z>1</z></matrixSize><fieldOfView_mm><x>400</x><y>200</y><z>4</z></fieldOfView_mm>"
        "</encodedSpace><reconSpace><matrixSize><x>160</x><y>160</y><z>1</z></matrixSize>"
        "<fieldOfView_mm><x>200</x><y>200</y><z>4</z></fieldOfView_mm></reconSpace>"
        "<encodingLimits/><trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"
    )
    out = tmp_path / "gre.h5"
    write_ismrmrd(out, xml, _blocks_of(open_twix(path)))
    done = subprocess.run(
        ["ismrmrd_recon_cartesian_2d", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-500:]
    with h5py.File(out, "r") as handle:
        image = handle["dataset/cpp/data"][0, 0, 0]

    (scan,) = twixtools.read_twix(str(path), verbose=False)
    kspace = np.zeros((2, 160, 320), dtype=np.complex64)
    for mdb in image_mdbs(scan):
        kspace[:, mdb.cLin, :] = mdb.data
    coils = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(1, 2))), axes=(1, 2))
    expected = np.sqrt((np.abs(coils[:, :, 80:240]) ** 2).sum(axis=0))
    a, b = image.ravel(), expected.ravel()
    correlation = np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)
    assert image.shape == (160, 160)
    assert correlation > 0.999


_PARSE_ALONE = """
import json, sys
from pathlib import Path
from pipeline.raw.protocol import ismrmrd_header, parse_protocol
from pipeline.raw.twix import open_twix
meas = open_twix(Path(sys.argv[1])).measurements[0]
xml = ismrmrd_header(parse_protocol(meas.header_bytes), noise=meas.is_noise)
print(json.dumps({"xml": xml, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in
    ("twixtools", "matplotlib", "scipy"))}))
"""


def test_protocol_parses_without_importing_twixtools(tmp_path: Path) -> None:
    """The XProtocol parser is loaded alone: a worker does not pay for twixtools' imports
    (scipy and matplotlib, seconds per process), and the header is the same as here."""
    import json
    import sys

    from pipeline.raw.protocol import ismrmrd_header, parse_protocol

    path = tmp_path / "meas.dat"
    write_vd_twix(path, [SyntheticMeasurement(channels=2, samples=16, lines=4)])
    done = subprocess.run(
        [sys.executable, "-c", _PARSE_ALONE, str(path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    answer = json.loads(done.stdout)
    assert answer["loaded"] == []
    meas = open_twix(path).measurements[0]
    assert answer["xml"] == ismrmrd_header(parse_protocol(meas.header_bytes), noise=meas.is_noise)


def _same_leaves(a: np.ndarray, b: np.ndarray, where: str) -> None:
    """Field by field (padding between fields is never written, so never compared)."""
    if a.dtype.names is None:
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), where
        return
    for name in a.dtype.names:
        _same_leaves(
            np.ascontiguousarray(a[name]), np.ascontiguousarray(b[name]), f"{where}.{name}"
        )


def _assert_same_blocks(path: Path, **options: int) -> tuple[int, int]:
    """Runs of readouts decode to the blocks of one readout at a time.

    Returns the acquisitions and waveforms they hold.
    """
    twix = open_twix(path)
    counts = {AcquisitionBlock: 0, WaveformBlock: 0}
    for meas in twix.measurements:
        runs = list(measurement_blocks(twix, meas, **options))
        single = list(measurement_blocks(twix, meas, max_run=1, **options))
        assert [(type(b), len(b)) for b in runs] == [(type(b), len(b)) for b in single]
        for k, (run, one) in enumerate(zip(runs, single, strict=True)):
            _same_leaves(run.rows["head"], one.rows["head"], f"block {k} head")
            for field in ("traj", "data") if isinstance(run, AcquisitionBlock) else ("data",):
                for i, (x, y) in enumerate(zip(run.rows[field], one.rows[field], strict=True)):
                    assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), (k, field, i)
            counts[type(run)] += len(run)
    assert counts[AcquisitionBlock] == sum(m.acquisitions for m in twix.measurements)
    return counts[AcquisitionBlock], counts[WaveformBlock]


_BLOCKINGS = [{}, {"block_rows": 7}, {"block_bytes": 10_000}]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=reference_marks("twix", n)) for n in ("gre.dat", "epi.dat")]
)
def test_runs_of_readouts_decode_as_one_at_a_time_real(name: str) -> None:
    for options in _BLOCKINGS:
        assert _assert_same_blocks(REFERENCE / name, **options)[0] > 0


def test_runs_of_readouts_decode_as_one_at_a_time_generated(tmp_path: Path) -> None:
    """Shapes change (noise, then imaging), SYNCDATA and PMU packets cut runs, VB17 too."""
    vd, vb = tmp_path / "vd.dat", tmp_path / "vb.dat"
    write_vd_twix(
        vd,
        [
            SyntheticMeasurement(noise=True, channels=3, samples=32, lines=4, slices=1),
            SyntheticMeasurement(
                channels=4, samples=64, lines=12, slices=3, ref_lines=4, contrasts=2,
                syncdata_every=5, pmu_every=7,
            ),
        ],
    )  # fmt: skip
    write_vb17_twix(vb, SyntheticMeasurement(channels=3, samples=48, lines=10, syncdata_every=4))
    for options in _BLOCKINGS:
        acquisitions, waveforms = _assert_same_blocks(vd, **options)
        assert acquisitions == 4 + 12 * 3 * 2 and waveforms > 0
        assert _assert_same_blocks(vb, **options)[0] == 20
