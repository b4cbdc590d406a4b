"""SynthMR.py, the Slicer module: it imports under a minimal fake of Slicer's Qt side, its .ui binds only parameter
node fields, and its Logic (the adapter between MRML nodes and files) works on a real MRML scene from the PyPI
package slicer-core: nodes -> files on the reference grid -> runner -> volume nodes with the input's IJK-to-RAS."""

import importlib
import json
import re
import sys
import types
import typing
import unittest
import xml.etree.ElementTree as ElementTree
from types import SimpleNamespace

import numpy as np
import pytest

from test_slicer_lib import EXTENSION, IJK_TO_RAS, SHAPE, case_arrays
from test_slicer_lib import private_synthmr_config  # noqa: F401 (autouse: each test its own trust records)

from SynthMRLib import SynthMRError, discover_bundles, read_tool_description, trust_bundle, write_nrrd
from SynthMRLib.geometry import on_reference_grid
from SynthMRLib.testing import LESION_CONTRAST, write_test_bundle
from synthmr.io import read_image

UI_FILE = EXTENSION / "Resources" / "UI" / "SynthMR.ui"
MRML_CLASSES = (
    "vtkMRMLLabelMapVolumeNode",
    "vtkMRMLMarkupsFiducialNode",
    "vtkMRMLScalarVolumeNode",
    "vtkMRMLSegmentationNode",
)


# Fakes of what slicer-core does not provide: Slicer's Qt side


def qt_side_fakes():
    """``qt``, ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper`` and ``slicer.i18n``: only what
    SynthMR.py uses when it is imported (the widget itself needs a running Slicer)."""
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text

    wrapper = types.ModuleType("slicer.parameterNodeWrapper")

    class Choice:
        def __init__(self, choices):
            self.choices = choices

    class WithinRange:
        def __init__(self, minimum, maximum):
            self.minimum, self.maximum = minimum, maximum

    def parameterNodeWrapper(cls):
        # Like the real wrapper: the fields are the class's type hints, resolved in its module, as allParameters.
        cls.allParameters = typing.get_type_hints(cls, include_extras=True)
        return cls

    wrapper.Choice, wrapper.WithinRange, wrapper.parameterNodeWrapper = Choice, WithinRange, parameterNodeWrapper

    scripted = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            pass

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, *args, **kwargs):
            pass

    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(scripted, cls.__name__, cls)
    return {
        "qt": types.ModuleType("qt"),
        "slicer.i18n": i18n,
        "slicer.parameterNodeWrapper": wrapper,
        "slicer.ScriptedLoadableModule": scripted,
    }


def slicer_fakes():
    """``slicer``, ``slicer.util`` and ``vtk`` themselves, for importing SynthMR.py with no Slicer at all."""
    slicer = types.ModuleType("slicer")
    for name in MRML_CLASSES:
        setattr(slicer, name, type(name, (), {}))
    util = types.ModuleType("slicer.util")
    util.VTKObservationMixin = type("VTKObservationMixin", (), {})
    slicer.util = util
    # The application: the module connects to its signals (slicer.app.connections records them).
    connections = []
    slicer.app = SimpleNamespace(connect=lambda signal, slot: connections.append((signal, slot)),
                                 connections=connections)
    return {"slicer": slicer, "slicer.util": util, "vtk": types.ModuleType("vtk")}


def import_synthmr(monkeypatch, fakes):
    """SynthMR.py imported afresh with ``fakes`` in sys.modules; everything is restored after the test."""
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "SynthMR", None)
    del sys.modules["SynthMR"]  # monkeypatch removes the fresh import again afterwards
    return importlib.import_module("SynthMR")


def test_module_imports_under_fakes_without_slicer_and_heavy_packages(monkeypatch):
    # None in sys.modules makes any import of the name fail: importing the module must not need them (the
    # Extensions Index asks that nothing beyond Slicer, vtk and numpy is imported at file scope).
    absent = dict.fromkeys(("torch", "monai", "synthmr", "PyTorchUtils", "SimpleITK", "ctk"))
    module = import_synthmr(monkeypatch, {**slicer_fakes(), **qt_side_fakes(), **absent})
    parent = SimpleNamespace()
    module.SynthMR(parent)
    assert parent.title == "SynthMR" and parent.categories == ["Image Synthesis"] and parent.dependencies == []
    assert "separate process" in parent.helpText


def ui_bindings():
    """(widget class, SlicerParameterName) of every widget the .ui binds to a parameter."""
    bindings = []
    for widget in ElementTree.parse(UI_FILE).getroot().iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bindings.append((widget.get("class"), prop.findtext("string")))
    return bindings


def unannotated(hint):
    return typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint


def test_every_slicer_parameter_name_is_a_parameter_node_field_of_a_fitting_type(monkeypatch):
    module = import_synthmr(monkeypatch, {**slicer_fakes(), **qt_side_fakes()})
    fields = module.SynthMRParameterNode.allParameters
    bindings = ui_bindings()
    assert bindings, "the .ui binds no parameter"
    for widget_class, name in bindings:
        assert name in fields, f"{widget_class} binds {name!r}, which SynthMRParameterNode does not have"
        hint, base = fields[name], unannotated(fields[name])
        if widget_class == "QCheckBox":
            assert base is bool, name
        elif widget_class == "QDoubleSpinBox":
            assert base is float, name
        elif widget_class == "QComboBox":  # the real connector needs a Choice to fill the combo box
            assert base is str and any(type(a).__name__ == "Choice" for a in typing.get_args(hint)[1:]), name
        elif widget_class == "qMRMLNodeComboBox":
            node_types = typing.get_args(base) or (base,)
            assert type(None) in node_types and all(t is type(None) or t.__name__ in MRML_CLASSES for t in node_types)
        else:
            raise AssertionError(f"no parameter connector for {widget_class} ({name})")
    # Every edit control of the panel is bound: nothing is read from a widget behind the parameter node's back.
    assert {name for _, name in bindings} == set(fields) - {"bundlePath"}


def test_choosing_an_untrusted_bundle_asks_and_no_keeps_synthesize_disabled(monkeypatch, tmp_path):
    """The panel's side of trust, on a stand-in for the widget (its Qt parts need a running Slicer): choosing a
    bundle from elsewhere asks once, with the library's text; No leaves Synthesize disabled, saying why."""
    fakes = {**slicer_fakes(), **qt_side_fakes()}
    questions, answers = [], [False, True]
    fakes["slicer.util"].confirmYesNoDisplay = lambda text: questions.append(text) or answers.pop(0)
    module = import_synthmr(monkeypatch, fakes)
    bundle = write_test_bundle(tmp_path / "elsewhere", "someone_elses")
    widget = SimpleNamespace(_bundles=discover_bundles(added=[bundle], repository=tmp_path / "none"),
                             _parameterNode=None, _task=None, _inputSelectors={}, _buildInterface=lambda entry: None,
                             ui=SimpleNamespace(applyButton=SimpleNamespace()))
    for name in ("_checkCanApply", "_selectedInputs"):
        setattr(widget, name, getattr(module.SynthMRWidget, name).__get__(widget))
    choose = module.SynthMRWidget.onBundleChanged.__get__(widget)
    choose(0, ask=False)  # the module's start or a refresh: nobody is asked
    assert questions == [] and not widget.ui.applyButton.enabled
    choose(0)
    assert len(questions) == 1 and "Run it only if you trust its author." in questions[0]
    assert not widget.ui.applyButton.enabled and "not trusted" in widget.ui.applyButton.toolTip
    choose(0)
    assert len(questions) == 2 and widget._bundles[0].trusted
    assert widget.ui.applyButton.toolTip.startswith("Choose: ")  # now only the inputs are missing
    choose(0)
    assert len(questions) == 2  # recorded: not asked again


def test_every_widget_the_code_uses_is_in_the_ui():
    names = {widget.get("name") for widget in ElementTree.parse(UI_FILE).getroot().iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", (EXTENSION / "SynthMR.py").read_text()))
    assert used and used <= names, f"used in SynthMR.py but not in the .ui: {sorted(used - names)}"


# The Logic on a real MRML scene (slicer-core)


@pytest.fixture
def mrml(monkeypatch, tmp_path):
    """A real MRML scene as slicer.mrmlScene, SynthMR imported over slicer-core with fakes for the Qt side only."""
    slicer = pytest.importorskip("slicer", reason="needs slicer-core, the PyPI package of Slicer's MRML without Qt")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the slicer module here is not slicer-core")
    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    # updateSegmentBinaryLabelmapFromArray, used to build test segmentations, asks for these module logics.
    volumes, segmentations = slicer.vtkSlicerVolumesLogic(), slicer.vtkSlicerSegmentationsModuleLogic()
    volumes.SetMRMLScene(scene)
    segmentations.SetMRMLScene(scene)
    monkeypatch.setattr(slicer, "modules", SimpleNamespace(volumes=SimpleNamespace(logic=lambda: volumes),
                                                           segmentations=SimpleNamespace(logic=lambda: segmentations)),
                        raising=False)
    module = import_synthmr(monkeypatch, qt_side_fakes())
    bundle = write_test_bundle(tmp_path / "bundles")
    trust_bundle(bundle)  # as the user's Yes in the panel does
    interface = read_tool_description(bundle)
    return SimpleNamespace(slicer=slicer, vtk=importlib.import_module("vtk"), scene=scene, module=module,
                           logic=module.SynthMRLogic(), interface=interface)


def add_volume(mrml, array, name, labelmap=False, ijk_to_ras=IJK_TO_RAS):
    node_class = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    return mrml.slicer.util.addVolumeFromArray(array, ijk_to_ras, name, node_class)


def add_segmentation(mrml, reference, segments, name="Tumour segmentation"):
    node = mrml.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    for segment_name, mask in segments.items():
        segment_id = node.GetSegmentation().AddEmptySegment("", segment_name)
        mrml.slicer.util.updateSegmentBinaryLabelmapFromArray(mask, node, segment_id, reference)
    return node


def case_nodes(mrml):
    arrays = case_arrays()
    t1 = add_volume(mrml, arrays["t1_pre"], "T1 pre")
    liver = add_volume(mrml, arrays["liver"], "Liver", labelmap=True)
    tumor = add_segmentation(mrml, t1, {"Segment_1": arrays["tumor"]})
    return arrays, {"t1_pre": t1, "liver": liver, "tumor": tumor}


def scene_ids(scene):
    return [scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())]


def matrix_of(mrml, node):
    return mrml.module.SynthMRLogic.ijkToRAS(node)


def test_scene_inputs_become_files_on_the_reference_grid(mrml, tmp_path):
    arrays, nodes = case_nodes(mrml)
    before = scene_ids(mrml.scene)
    inputs = mrml.logic.sceneInputs(mrml.interface, nodes)
    assert scene_ids(mrml.scene) == before  # exporting the segmentation added nothing to the scene
    for role, array in arrays.items():
        np.testing.assert_array_equal(inputs[role].array, array)
        np.testing.assert_allclose(inputs[role].ijk_to_ras, IJK_TO_RAS, atol=1e-9)
    storage = mrml.slicer.vtkMRMLVolumeArchetypeStorageNode()
    for role, scene_input in inputs.items():
        path = write_nrrd(tmp_path / f"{role}.nrrd", scene_input.array, scene_input.ijk_to_ras)
        back = mrml.slicer.vtkMRMLScalarVolumeNode()  # Slicer's own reader: RAS again from the LPS file
        storage.SetFileName(str(path))
        assert storage.ReadData(back)
        # This grid is left-handed (K runs towards inferior): slicer-core 5.13 reads it as the right-handed
        # equivalent, the slice axis reversed, i.e. the same voxels at the same places; the module maps them back.
        flipped = IJK_TO_RAS.copy()
        flipped[:3, 2] *= -1
        flipped[:3, 3] += IJK_TO_RAS[:3, 2] * (SHAPE[0] - 1)
        read = matrix_of(mrml, back)
        assert np.allclose(read, IJK_TO_RAS, atol=1e-9) or np.allclose(read, flipped, atol=1e-9), read
        voxels = on_reference_grid(mrml.slicer.util.arrayFromVolume(back), read, IJK_TO_RAS)
        np.testing.assert_array_equal(voxels, arrays[role])
        volume = read_image(path)  # and synthmr's (SimpleITK): Volume.affine is index -> RAS
        np.testing.assert_allclose(volume.affine, matrix_of(mrml, nodes["t1_pre"]), atol=1e-9)


def test_segments_are_exported_with_the_bundles_label_values(mrml):
    arrays, nodes = case_nodes(mrml)
    multi = type(mrml.interface.inputs["liver"])("tumor", "labelmap", "tumour", labels={1: "core", 2: "edema"})
    core, edema = np.zeros_like(arrays["tumor"]), np.zeros_like(arrays["tumor"])
    core[1, 2, 2], edema[1, 3, 3] = 1, 1
    segmentation = add_segmentation(mrml, nodes["t1_pre"], {"Edema": edema, "Core": core}, name="BraTS")
    # As the Segment Editor keeps them: both segments in one labelmap layer, told apart by their value in it.
    segmentation.GetSegmentation().CollapseBinaryLabelmaps(False)
    assert segmentation.GetSegmentation().GetNumberOfLayers() == 1
    exported = mrml.logic.segmentationArray(multi, segmentation, nodes["t1_pre"])
    np.testing.assert_array_equal(exported, core + 2 * edema)
    # A segment drawn beyond the reference volume is cropped to it.
    beyond = mrml.slicer.vtkOrientedImageData()
    beyond.SetExtent(-2, 3, 0, 0, 0, 0)  # I from -2 to 3 on row J = 0, slice K = 0
    beyond.AllocateScalars(mrml.vtk.VTK_UNSIGNED_CHAR, 1)
    beyond.GetPointData().GetScalars().Fill(1)
    matrix = mrml.vtk.vtkMatrix4x4()
    nodes["t1_pre"].GetIJKToRASMatrix(matrix)
    beyond.SetImageToWorldMatrix(matrix)
    outside = add_segmentation(mrml, nodes["t1_pre"], {}, name="Beyond")
    segment_id = outside.GetSegmentation().AddEmptySegment("", "liver")
    mrml.slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(beyond, outside, segment_id)
    cropped = np.zeros_like(arrays["liver"])
    cropped[0, 0, :4] = 1
    np.testing.assert_array_equal(mrml.logic.segmentationArray(mrml.interface.inputs["liver"], outside,
                                                               nodes["t1_pre"]), cropped)
    with pytest.raises(SynthMRError, match=r"input 'tumor' \(segmentation BraTS\): segment\(s\) 'Edema' match no"):
        mrml.logic.segmentationArray(type(multi)("tumor", "labelmap", "x", labels={1: "core", 3: "x"}), segmentation,
                                     nodes["t1_pre"])


def test_process_runs_the_bundle_and_loads_outputs_on_the_input_geometry(mrml, tmp_path):
    arrays, nodes = case_nodes(mrml)
    before = scene_ids(mrml.scene)
    # Move the lesion 2 voxels along I, given as the RAS millimetres of that step on the oblique grid.
    offset_ras = tuple(IJK_TO_RAS[:3, :3] @ [2.0, 0.0, 0.0])
    edits = mrml.module.LesionEditSettings(translate=offset_ras, translateUnit="mm")
    events = []
    outputs = mrml.logic.process(mrml.interface, nodes, edits=edits, workFolder=tmp_path / "work",
                                 progress=events.append)
    assert [node.GetName() for node in outputs] == [
        "synthmr_test t1_post1 (synthetic)", "synthmr_test tumor_shown (synthetic)", "synthmr_test tumor (edited)"]
    # Tagged as what SynthMR made, with the output's sidecar; the banner's query sees them once a view shows one.
    assert [node.GetAttribute("SynthMR.synthetic") for node in outputs] == ["true", "true", None]
    assert outputs[2].GetAttribute("SynthMR.edited") == "true"
    provenance = json.loads(outputs[0].GetAttribute("SynthMR.provenance"))
    assert provenance["synthetic"] is True and provenance["bundle"] == "synthmr_test" and provenance["output"] == "t1_post1"
    assert "translate" in json.loads(outputs[2].GetAttribute("SynthMR.provenance"))["lesion_edits"][0]
    composite = mrml.scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
    composite.SetBackgroundVolumeID(nodes["t1_pre"].GetID())
    assert mrml.logic.shownSyntheticVolumes(mrml.scene) == []
    composite.SetForegroundVolumeID(outputs[0].GetID())
    assert mrml.logic.shownSyntheticVolumes(mrml.scene) == ["synthmr_test t1_post1 (synthetic)"]
    mrml.scene.RemoveNode(composite)
    # a labelmap output role becomes a labelmap node, like the edited lesion
    assert [node.GetClassName() for node in outputs] == [
        "vtkMRMLScalarVolumeNode", "vtkMRMLLabelMapVolumeNode", "vtkMRMLLabelMapVolumeNode"]
    reference = matrix_of(mrml, nodes["t1_pre"])
    for node in outputs:
        np.testing.assert_array_equal(matrix_of(mrml, node), reference)  # exactly the input's IJK-to-RAS
        assert mrml.scene.GetNodeByID(node.GetID()) is node
    moved = np.roll(arrays["tumor"], 2, axis=2)  # +2 along I, which is the last array axis (K, J, I)
    np.testing.assert_array_equal(mrml.slicer.util.arrayFromVolume(outputs[2]), moved)
    np.testing.assert_array_equal(mrml.slicer.util.arrayFromVolume(outputs[1]), moved > 0)
    np.testing.assert_allclose(mrml.slicer.util.arrayFromVolume(outputs[0]),
                               2 * arrays["t1_pre"] + LESION_CONTRAST * moved)
    assert scene_ids(mrml.scene)[: len(before)] == before
    assert events[0].stage == "edit lesion" and events[-1].fraction == 1.0
    assert not (tmp_path / "work").exists()  # the temporary files are gone


def test_a_run_that_warns_asks_before_adding_anything(mrml, tmp_path):
    """The runner's input check warns (a summary whose threshold no case meets): the user is asked before any node
    is added; No adds nothing and removes the files, Yes adds the outputs with the check in their provenance."""
    from synthmr.bundle.input_check import SUMMARY_FILE, build_input_summary

    arrays, nodes = case_nodes(mrml)
    case = {"t1_pre": write_nrrd(tmp_path / "t1_pre.nrrd", arrays["t1_pre"], IJK_TO_RAS)}
    summary = build_input_summary(mrml.interface, [case] * 3, [case] * 10)
    summary["threshold"] = -1.0
    (mrml.interface.bundle_dir / SUMMARY_FILE).parent.mkdir()
    (mrml.interface.bundle_dir / SUMMARY_FILE).write_text(json.dumps(summary))
    before, questions = scene_ids(mrml.scene), []
    added = mrml.logic.process(mrml.interface, nodes, workFolder=tmp_path / "work",
                               confirm=lambda text: questions.append(text) or False)
    assert added == [] and scene_ids(mrml.scene) == before and not (tmp_path / "work").exists()
    assert len(questions) == 1 and "unlike bundle synthmr_test's training data" in questions[0]
    outputs = mrml.logic.process(mrml.interface, nodes, workFolder=tmp_path / "work", confirm=lambda text: True)
    check = json.loads(outputs[0].GetAttribute("SynthMR.provenance"))["input_check"]
    assert check["passed"] is False and check["threshold"] == -1.0


def test_failures_leave_the_scene_as_it_was(mrml, tmp_path):
    arrays, nodes = case_nodes(mrml)
    wrong = arrays["liver"].copy()
    wrong[0, 0, 0] = 2
    bad_liver = add_volume(mrml, wrong, "Liver with a stray label", labelmap=True)
    before = scene_ids(mrml.scene)
    with pytest.raises(SynthMRError, match=r"input 'liver' \(Liver with a stray label\): holds label value\(s\) 2"):
        mrml.logic.process(mrml.interface, {**nodes, "liver": bad_liver}, workFolder=tmp_path / "work")
    shifted = IJK_TO_RAS.copy()
    shifted[0, 3] += 5
    elsewhere = add_volume(mrml, arrays["liver"], "Liver elsewhere", labelmap=True, ijk_to_ras=shifted)
    with pytest.raises(SynthMRError, match=r"input 'liver' \(Liver elsewhere\): is not on the grid .*origin 15"):
        mrml.logic.sceneInputs(mrml.interface, {**nodes, "liver": elsewhere})
    transform = mrml.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Registration")
    nodes["liver"].SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(SynthMRError, match=r"input 'liver' \(Liver\): is under the transform Registration; harden"):
        mrml.logic.sceneInputs(mrml.interface, nodes)
    nodes["liver"].SetAndObserveTransformNodeID(None)
    with pytest.raises(SynthMRError, match=r"input 't1_pre' \(Liver\): is a vtkMRMLLabelMapVolumeNode; choose a"):
        mrml.logic.sceneInputs(mrml.interface, {**nodes, "t1_pre": nodes["liver"]})
    before = scene_ids(mrml.scene)
    # The runner fails (a bundle without its inference config): one message, no node, no file.
    (mrml.interface.bundle_dir / "configs" / "inference.yaml").unlink()
    trust_bundle(mrml.interface.bundle_dir)  # its code changed: trusted again, so that the runner is what fails
    with pytest.raises(SynthMRError, match="bundle has no configs/inference.yaml"):
        mrml.logic.process(mrml.interface, nodes, workFolder=tmp_path / "work")
    assert scene_ids(mrml.scene) == before and not (tmp_path / "work").exists()


def test_lesion_edit_request_converts_scene_units_to_voxels(mrml, tmp_path):
    arrays, nodes = case_nodes(mrml)
    settings = mrml.module.LesionEditSettings
    logic, interface, reference = mrml.logic, mrml.interface, nodes["t1_pre"]
    in_mm = logic.lesionEditRequest(interface, settings(translate=tuple(IJK_TO_RAS[:3, :3] @ [1, -2, 1])),
                                    reference, tmp_path)
    np.testing.assert_allclose(in_mm.translate, [1, -2, 1], atol=1e-9)
    in_voxels = logic.lesionEditRequest(interface, settings(translate=(3, 0, -1), translateUnit="voxel"),
                                        reference, tmp_path)
    assert in_voxels.translate == (3.0, 0.0, -1.0) and logic.lesionEditRequest(interface, settings(), reference,
                                                                               tmp_path) is None
    centre = mrml.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "Centre")
    with pytest.raises(SynthMRError, match=r"transplant centre \(Centre\): has no point"):
        logic.lesionEditRequest(interface, settings(donor=nodes["tumor"], centre=centre), reference, tmp_path)
    centre.AddControlPoint(*(IJK_TO_RAS @ [5, 2, 1, 1])[:3])
    transplant = logic.lesionEditRequest(interface, settings(donor=nodes["tumor"], centre=centre), reference, tmp_path)
    np.testing.assert_allclose(transplant.centre, [5, 2, 1], atol=1e-9)
    assert transplant.transplant == tmp_path / "transplant_donor.nrrd"
    np.testing.assert_array_equal(read_image(transplant.transplant).array, np.transpose(arrays["tumor"], (2, 1, 0)))
    empty = add_segmentation(mrml, reference, {"tumor": np.zeros_like(arrays["tumor"])}, name="Empty")
    with pytest.raises(SynthMRError, match=r"input 'transplant donor' \(Empty\): is empty"):
        logic.lesionEditRequest(interface, settings(donor=empty), reference, tmp_path)


def test_the_modules_self_test_passes_on_slicer_core(mrml):
    """SynthMRTest is what Slicer's ctest and Reload & Test run; with synthmr installed here it does a whole run."""
    result = unittest.TestResult()
    mrml.module.SynthMRTest("runTest").run(result)
    assert result.wasSuccessful(), result.errors + result.failures
    assert result.testsRun == 1 and mrml.scene.GetFirstNodeByName("synthmr_test t1_post1 (synthetic)") is not None
