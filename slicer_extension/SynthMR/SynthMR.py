"""SynthMR: run a SynthMR bundle on volumes and segmentations of the scene, with optional lesion edits.

The module is thin (docs/design.md, *The 3D Slicer extension*): the toolDescription comes from the chosen bundle's metadata, everything that needs no
Slicer lives in ``SynthMRLib`` (tested with plain pytest), and inference runs in separate processes
(``synthmr lesion``, ``synthmr run``) that print machine-readable progress, so Slicer never freezes and Cancel ends
the whole process tree. The Logic is the adapter between MRML nodes and files: inputs are written as NRRD on the
reference volume's grid (IJK-to-RAS kept, LPS in the files), and the outputs come back as volume nodes on the
reference's exact geometry. A bundle's configs run code: one that did not come with the extension runs only once the
user has confirmed that they trust it (the question and the records come from SynthMRLib.bundles).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Union

import numpy as np
import qt
import slicer
import vtk
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SynthMRLib import (
    BundleEntry,
    JobState,
    LesionEditRequest,
    SceneInput,
    SynthesisJob,
    SynthMRError,
    check_inputs,
    clear_cache,
    combine_segments,
    confirm_trust,
    discover_bundles,
    ras_point_to_ijk,
    ras_vector_to_ijk,
    read_sidecar_text,
    read_tool_description,
    segment_label_values,
    trust_bundle,
    write_nrrd,
)
from SynthMRLib import dependencies
from SynthMRLib.bundles import saved_paths, shipped_bundles
from SynthMRLib.geometry import on_reference_grid
from SynthMRLib.samples import bundle_folders, sample_cases
from SynthMRLib.validation import GRID_TOLERANCE_MM, check_labelmap, check_roles, grid_difference

if TYPE_CHECKING:  # annotations only: SynthMRLib loads synthmr's reader at run time
    from synthmr.bundle.description import InputRole, ToolDescription

# Node classes a role of each kind accepts (labelmap roles take a labelmap volume or a segmentation).
VOLUME_CLASSES = ("vtkMRMLScalarVolumeNode",)
LABELMAP_CLASSES = ("vtkMRMLLabelMapVolumeNode", "vtkMRMLSegmentationNode")
# The parameter node keeps one node reference per input role; the roles depend on the bundle.
INPUT_REFERENCE_PREFIX = "SynthMRInput:"
SETTINGS_USER_FOLDER = "SynthMR/UserBundleFolder"
SETTINGS_ADDED_BUNDLES = "SynthMR/AddedBundles"
PROGRESS_INTERVAL_MS = 200
# Node attributes that mark what SynthMR made: synthetic images (and label maps), edited lesions, their sidecar.
SYNTHETIC_ATTRIBUTE = "SynthMR.synthetic"
EDITED_ATTRIBUTE = "SynthMR.edited"
PROVENANCE_ATTRIBUTE = "SynthMR.provenance"
BANNER_INTERVAL_MS = 500
# What the progress line says at each stage of `synthmr lesion` and the runner's protocol.
STAGE_LABELS = {
    "edit lesion": _("Editing the lesion"),
    "validate": _("Checking the inputs"),
    "load": _("Loading the network"),
    "infer": _("Synthesizing"),
    "write": _("Writing the outputs"),
    "done": _("Loading the results"),
}


@contextmanager
def reportingErrors(what: str) -> Iterator[None]:
    """Show a user's mistake (SynthMRError) as one message; anything else is a bug: message, traceback, re-raised."""
    try:
        with slicer.util.WaitCursor():
            yield
    except SynthMRError as error:
        slicer.util.errorDisplay(f"{what} {error}")
    except Exception as error:
        slicer.util.errorDisplay(f"{what} {error!r}", detailedText=traceback.format_exc())
        raise


#
# Module
#


class SynthMR(ScriptedLoadableModule):
    """The module's description for Slicer; no work happens here (nothing is imported or installed)."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SynthMR")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []
        self.parent.contributors = ["SynthMR developers"]
        self.parent.helpText = _(
            "Synthesize MRI sequences with a SynthMR bundle (a MONAI bundle with published GAN methods). Choose a "
            "bundle, pick the scene volumes and segmentations it needs, optionally move, scale, mirror or transplant "
            "the lesion, and Synthesize: the synthetic sequences are added to the scene on the input's grid. "
            "Inference runs in a separate process; Cancel stops it."
        )
        self.parent.acknowledgementText = _(
            "SynthMR turns published GAN methods for multiparametric MRI synthesis into MONAI bundles. Shipped "
            "weights are trained on SynthMR's simulated phantom, not on patients: see each bundle's model card."
        )
        # Each bundle's sample case goes to the Sample Data module once Slicer has started.
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData(bundleDirs=None) -> None:
    """Register each bundle's sample case (``sample/``) with Slicer's Sample Data module, category "SynthMR".

    Without ``bundleDirs`` (at startup): the bundles of the user's bundle folder and the shipped ones; the panel
    registers those it lists too. It reads files only (SynthMRLib.samples): neither synthmr nor PyTorch is imported.
    """
    try:
        import SampleData
    except ImportError:  # a Slicer without the Sample Data module
        return
    if bundleDirs is None:
        shipped = shipped_bundles()
        bundleDirs = bundle_folders([userBundleFolder(), shipped[0] if shipped else None])
    for case in sample_cases(bundleDirs):
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category=case.category,
            sampleName=case.name,
            uris=case.uris,
            fileNames=case.file_names,
            nodeNames=list(case.node_names),
            loadFileType=list(case.file_types),
            checksums=list(case.checksums),
            thumbnailFileName=str(case.thumbnail) if case.thumbnail else None,
        )


def userBundleFolder() -> str:
    """The user's bundle folder (application settings; default ``~/SynthMR/bundles``)."""
    default = str(Path.home() / "SynthMR" / "bundles")
    return str(qt.QSettings().value(SETTINGS_USER_FOLDER) or default)


def bundleItemText(entry: BundleEntry) -> str:
    """A bundle's line in the bundle selector: its title and version from its metadata."""
    title = entry.title or entry.name
    text = f"{title} v{entry.version}" if entry.version else title
    return text if entry.problem is None else _("{bundle} (cannot be used)").format(bundle=text)


def bundleItemToolTip(entry: BundleEntry) -> str:
    """A bundle's tooltip in the bundle selector: why it cannot be used, or its description; then where it is."""
    where = _("{name}, {source}: {path}").format(name=entry.name, source=entry.source, path=entry.path)
    first = entry.problem or entry.description
    return f"{first}\n\n{where}" if first else where


#
# Parameter node
#


@parameterNodeWrapper
class SynthMRParameterNode:
    """The module's state in the scene (saved with it).

    The input of each of the bundle's roles is a node reference named ``SynthMRInput:<role>`` on the same MRML node
    (see :meth:`SynthMRLogic.inputNode`): their number and kinds come from the bundle, so they cannot be fields.

    bundlePath: folder of the chosen bundle.
    device: where inference runs, "cpu" or "cuda".
    translateEnabled, translateUnit, translateX/Y/Z: move the lesion by (X, Y, Z): R, A, S in mm, or I, J, K voxels.
    scaleEnabled, scaleFactor: scale the lesion about its centroid.
    mirrorEnabled: mirror the lesion left-right about the organ's mid-sagittal plane (the image's without organ mask).
    transplantEnabled, transplantDonor, transplantCentre: replace the lesion by another case's (on the same grid),
        its centroid placed at the first point of transplantCentre (or left where it is without one).
    """

    bundlePath: str = ""
    device: Annotated[str, Choice(["cpu", "cuda"])] = "cpu"
    translateEnabled: bool = False
    translateUnit: Annotated[str, Choice(["mm", "voxel"])] = "mm"
    translateX: Annotated[float, WithinRange(-500.0, 500.0)] = 0.0
    translateY: Annotated[float, WithinRange(-500.0, 500.0)] = 0.0
    translateZ: Annotated[float, WithinRange(-500.0, 500.0)] = 0.0
    scaleEnabled: bool = False
    scaleFactor: Annotated[float, WithinRange(0.1, 10.0)] = 1.0
    mirrorEnabled: bool = False
    transplantEnabled: bool = False
    transplantDonor: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode, None] = None
    transplantCentre: Union[vtkMRMLMarkupsFiducialNode, None] = None


@dataclass
class LesionEditSettings:
    """Lesion edits as the user gives them, in scene terms (converted to voxels by :meth:`SynthMRLogic.start`).

    Args:
        translate: offset, or None for no move.
        translateUnit: "mm" (R, A, S) or "voxel" (I, J, K).
        scale: factor about the lesion's centroid, or None.
        mirror: mirror left-right.
        donor: labelmap or segmentation of another case's lesion, or None.
        centre: markups whose first point (RAS) is where the donor lesion goes, or None to leave it in place.
    """

    translate: tuple[float, float, float] | None = None
    translateUnit: str = "mm"
    scale: float | None = None
    mirror: bool = False
    donor: object | None = None
    centre: object | None = None

    @classmethod
    def fromParameterNode(cls, parameterNode: SynthMRParameterNode, supported: tuple[str, ...]) -> LesionEditSettings:
        """The edits the user enabled in the panel, among those the bundle ``supported`` (the panel hides the
        others, but the parameter node may still hold them from another bundle)."""
        p = parameterNode

        def enabled(edit: str, flag: bool) -> bool:
            return flag and edit in supported

        return cls(
            translate=(p.translateX, p.translateY, p.translateZ) if enabled("translate", p.translateEnabled) else None,
            translateUnit=p.translateUnit,
            scale=p.scaleFactor if enabled("scale", p.scaleEnabled) else None,
            mirror=enabled("mirror", p.mirrorEnabled),
            donor=p.transplantDonor if enabled("transplant", p.transplantEnabled) else None,
            centre=p.transplantCentre if enabled("transplant", p.transplantEnabled) else None,
        )


#
# Widget
#


class SynthMRWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: bundle choice, one selector per input role, lesion edits, device, Synthesize/Cancel, progress."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: SynthMRLogic | None = None
        self._parameterNode: SynthMRParameterNode | None = None
        self._parameterNodeGuiTag = None
        self._bundles: list[BundleEntry] = []
        self._entry: BundleEntry | None = None
        self._toolDescription: ToolDescription | None = None
        self._inputSelectors: dict[str, object] = {}
        self._task: SynthesisTask | None = None
        self._timer = qt.QTimer()
        self._timer.setInterval(PROGRESS_INTERVAL_MS)
        self._timer.timeout.connect(self._onProgressTimer)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SynthMR.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self._inputsLayout = qt.QFormLayout(self.ui.inputsWidget)
        self.logic = SynthMRLogic()
        # A banner on top while a slice view shows a synthetic volume: it must not be read as an acquired one.
        self.syntheticBanner = qt.QLabel()
        self.syntheticBanner.setWordWrap(True)
        self.syntheticBanner.setStyleSheet("QLabel { background-color: #b00020; color: white; font-weight: bold; "
                                           "padding: 6px; }")
        self.syntheticBanner.hide()
        self.layout.insertWidget(0, self.syntheticBanner)
        self._bannerTimer = qt.QTimer()
        self._bannerTimer.setInterval(BANNER_INTERVAL_MS)
        self._bannerTimer.timeout.connect(self._updateSyntheticBanner)
        self._bannerTimer.start()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.bundleComboBox.currentIndexChanged.connect(self.onBundleChanged)
        self.ui.addFolderButton.clicked.connect(self.onAddFolder)
        self.ui.addZipButton.clicked.connect(self.onAddZip)
        self.ui.userFolderButton.directoryChanged.connect(self.onUserFolderChanged)
        self.ui.installButton.clicked.connect(self.onInstallDependencies)
        self.ui.clearCacheButton.clicked.connect(self.onClearCache)
        self.ui.applyButton.clicked.connect(self.onApplyButton)
        self.ui.translateUnitComboBox.currentIndexChanged.connect(self._updateTranslateLabels)

        self.ui.userFolderButton.directory = self._userFolder()
        self.initializeParameterNode()
        self.refreshBundles()
        self._updateDependencyStatus()

    def cleanup(self) -> None:
        """Called when the application closes: stop a running synthesis (its processes would outlive Slicer)."""
        self._cancelTask()
        self._bannerTimer.stop()
        self.removeObservers()

    def _updateSyntheticBanner(self) -> None:
        shown = self.logic.shownSyntheticVolumes()
        self.syntheticBanner.setVisible(bool(shown))
        if shown:
            self.syntheticBanner.setText(_("SYNTHETIC images are shown: made by SynthMR, not acquired ({names})").format(
                names=", ".join(shown)))

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        # The run's reference node is about to go: its outputs would have no geometry to land on.
        self._cancelTask()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onReload(self) -> None:
        """Developer mode's Reload: also reload SynthMRLib, so edits to it take effect without a restart."""
        for name in [name for name in sys.modules if name == "SynthMRLib" or name.startswith("SynthMRLib.")]:
            del sys.modules[name]
        ScriptedLoadableModuleWidget.onReload(self)

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: SynthMRParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._selectBundle(self._parameterNode.bundlePath)
        self._checkCanApply()

    # Bundles

    def refreshBundles(self, ask: bool = False) -> None:
        """List the bundles of every source again, keeping the current choice when it is still there (``ask``: see
        :meth:`onBundleChanged`)."""
        self._bundles = self.logic.discoverBundles(self._addedBundles(), self._userFolder(), self._cacheFolder())
        combo = self.ui.bundleComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for index, entry in enumerate(self._bundles):
            combo.addItem(bundleItemText(entry))
            combo.setItemData(index, bundleItemToolTip(entry), qt.Qt.ToolTipRole)
        combo.blockSignals(wasBlocked)
        registerSampleData([entry.path for entry in self._bundles if entry.problem is None])
        self._selectBundle(self._parameterNode.bundlePath if self._parameterNode else "", ask)

    def _selectBundle(self, bundlePath: str, ask: bool = False) -> None:
        paths = [str(entry.path) for entry in self._bundles]
        index = paths.index(bundlePath) if bundlePath in paths else (0 if paths else -1)
        wasBlocked = self.ui.bundleComboBox.blockSignals(True)
        self.ui.bundleComboBox.currentIndex = index
        self.ui.bundleComboBox.blockSignals(wasBlocked)
        self.onBundleChanged(index, ask)

    def onBundleChanged(self, index: int, ask: bool = True) -> None:
        """Show the chosen bundle. ``ask``: the user chose it (not a refresh or the module's start), so a bundle that
        is not trusted yet asks them to confirm it (its configs run code)."""
        entry = self._bundles[index] if 0 <= index < len(self._bundles) else None
        if entry is not None and ask:
            try:
                entry = self._bundles[index] = confirm_trust(entry, slicer.util.confirmYesNoDisplay)
            except SynthMRError as error:
                slicer.util.errorDisplay(_("Cannot trust the bundle: {error}").format(error=error))
        self._entry = entry
        if self._parameterNode and entry is not None and self._parameterNode.bundlePath != str(entry.path):
            self._parameterNode.bundlePath = str(entry.path)
        self._toolDescription = entry.tool_description if entry else None
        self._buildInterface(entry)
        self._checkCanApply()

    def onAddFolder(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(self.parent, _("Choose a bundle folder"))
        if folder:
            self._addBundle(folder)

    def onAddZip(self) -> None:
        path = qt.QFileDialog.getOpenFileName(self.parent, _("Choose a zipped bundle"), "", _("Zip files (*.zip)"))
        if path:
            self._addBundle(path)

    def _addBundle(self, path: str) -> None:
        bundleDir = None
        with reportingErrors(_("Cannot add the bundle:")):
            bundleDir = self.logic.resolveBundle(path, self._cacheFolder())  # unpacks a zip; raises if no bundle
            added = [entry for entry in self._addedBundles() if entry != path] + [path]
            qt.QSettings().setValue(SETTINGS_ADDED_BUNDLES, added)
            if self._parameterNode:
                self._parameterNode.bundlePath = str(bundleDir)
        if bundleDir is not None:  # outside the wait cursor: a bundle from elsewhere asks to be trusted
            self.refreshBundles(ask=True)

    def onUserFolderChanged(self, folder: str) -> None:
        qt.QSettings().setValue(SETTINGS_USER_FOLDER, folder)
        self.refreshBundles()

    def onClearCache(self) -> None:
        if slicer.util.confirmOkCancelDisplay(
            _("Delete the unpacked copies of zipped bundles in {folder}? The zips themselves are kept and are "
              "unpacked again when next used.").format(folder=self._cacheFolder())
        ):
            clear_cache(self._cacheFolder())
            self.refreshBundles()

    def _addedBundles(self) -> list[str]:
        return saved_paths(qt.QSettings().value(SETTINGS_ADDED_BUNDLES))

    def _userFolder(self) -> str:
        return userBundleFolder()

    @staticmethod
    def _cacheFolder() -> str:
        return str(Path(slicer.app.cachePath) / "SynthMR" / "bundles")

    # The toolDescription of the chosen bundle

    def _buildInterface(self, entry: BundleEntry | None) -> None:
        """One selector per input role, the outputs it will create, and only the lesion edits it supports."""
        while self._inputsLayout.count():
            item = self._inputsLayout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        self._inputSelectors = {}
        toolDescription = entry.tool_description if entry else None
        if entry is None:
            self.ui.bundleDescriptionLabel.text = _("No bundle found: add a bundle folder or zip.")
        elif toolDescription is None:
            self.ui.bundleDescriptionLabel.text = entry.problem
        else:
            self.ui.bundleDescriptionLabel.text = str(entry.path)
        self.ui.outputsLabel.text = (
            "\n".join(f"{toolDescription.name} {name}: {role.description}" for name, role in toolDescription.outputs.items())
            if toolDescription
            else ""
        )
        self.ui.lesionCollapsibleButton.visible = bool(toolDescription and toolDescription.lesion_edits)
        if not toolDescription:
            return
        for name, role in toolDescription.inputs.items():
            selector = self._createSelector(role)
            label = role.description if role.required else _("{description} (optional)").format(
                description=role.description
            )
            self._inputsLayout.addRow(f"{label}:", selector)
            self._inputSelectors[name] = selector
        for edit, widget in (
            ("translate", self.ui.translateWidget),
            ("scale", self.ui.scaleWidget),
            ("mirror", self.ui.mirrorCheckBox),
            ("transplant", self.ui.transplantWidget),
        ):
            widget.visible = edit in toolDescription.lesion_edits
        self._updateTranslateLabels()

    def _createSelector(self, role: InputRole):
        selector = slicer.qMRMLNodeComboBox()
        selector.nodeTypes = list(VOLUME_CLASSES if role.kind == "volume" else LABELMAP_CLASSES)
        # A labelmap volume is a scalar volume to MRML; a volume role must not offer it.
        selector.showChildNodeTypes = role.kind != "volume"
        selector.noneEnabled = not role.required
        selector.addEnabled = False
        selector.removeEnabled = False
        selector.setMRMLScene(slicer.mrmlScene)
        selector.toolTip = _("{kind} input '{name}' of the bundle").format(kind=role.kind, name=role.name)
        if self._parameterNode:
            selector.setCurrentNode(SynthMRLogic.inputNode(self._parameterNode, role.name))
        selector.currentNodeChanged.connect(lambda node, name=role.name: self._onInputSelected(name, node))
        return selector

    def _onInputSelected(self, role: str, node) -> None:
        if self._parameterNode:
            SynthMRLogic.setInputNode(self._parameterNode, role, node)
        self._checkCanApply()

    def _updateTranslateLabels(self, *args) -> None:
        voxels = self.ui.translateUnitComboBox.currentText == "voxel"
        for spinBox, axis in zip((self.ui.translateXSpinBox, self.ui.translateYSpinBox, self.ui.translateZSpinBox),
                                 ("IJK" if voxels else "RAS")):
            spinBox.prefix = f"{axis}: "

    def _selectedInputs(self) -> dict[str, object]:
        return {name: selector.currentNode() for name, selector in self._inputSelectors.items()
                if selector.currentNode() is not None}

    def _checkCanApply(self, caller=None, event=None) -> None:
        """Enable Synthesize only when a run can start; its tooltip says what is missing. While a run goes on the
        button is Cancel, always enabled."""
        if self._task is not None:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the synthesis; nothing is added to the scene.")
            self.ui.applyButton.enabled = True
            return
        self.ui.applyButton.text = _("Synthesize")
        reason = None
        if self._toolDescription is None:
            reason = _("Choose a usable bundle.")
        elif not self._entry.trusted:
            reason = _("This bundle is not trusted: its configs run code. Choose it again and answer Yes if you trust "
                       "its author.")
        else:
            selected = self._selectedInputs()
            missing = [role.description for name, role in self._toolDescription.inputs.items()
                       if role.required and name not in selected]
            if missing:
                reason = _("Choose: {inputs}.").format(inputs=", ".join(missing))
        self.ui.applyButton.enabled = reason is None
        self.ui.applyButton.toolTip = reason or _("Run the bundle and add its outputs to the scene.")

    # Dependencies

    def _updateDependencyStatus(self) -> None:
        missing = dependencies.missing_modules()
        update = dependencies.synthmr_update()
        if missing:
            text = _("Not installed yet: {modules}.").format(modules=", ".join(missing))
        elif update:
            text = _("synthmr {installed} is installed; the extension carries {packaged}.").format(
                installed=update[0], packaged=update[1]
            )
        else:
            text = _("PyTorch, MONAI and synthmr are installed.")
        problems = dependencies.preflight() if missing or update else []
        if problems:
            text += " " + _("Before installing: {problems}.").format(problems="; ".join(problems))
        self.ui.dependenciesLabel.text = text
        self.ui.installButton.enabled = bool(missing or update)

    def onInstallDependencies(self) -> None:
        with reportingErrors(_("Failed to install the dependencies:")):
            self.logic.installDependencies(askConfirmation=True)
        self._updateDependencyStatus()

    # Running

    def onApplyButton(self) -> None:
        if self._task is not None:
            self._cancelTask()
            self.ui.statusLabel.text = _("Cancelled: nothing was added to the scene.")
            return
        with reportingErrors(_("Cannot start the synthesis:")):
            if not self.logic.installDependencies(askConfirmation=True):
                return
            self._task = self.logic.start(
                self._toolDescription,
                self._selectedInputs(),
                device=self._parameterNode.device,
                edits=LesionEditSettings.fromParameterNode(self._parameterNode, self._toolDescription.lesion_edits),
            )
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("Starting...")
            self._timer.start()
        self._updateDependencyStatus()
        self._checkCanApply()

    def _onProgressTimer(self) -> None:
        task = self._task
        if task is None:
            self._timer.stop()
            return
        for event in task.job.poll():
            self.ui.progressBar.value = int(round(100 * event.fraction))
            self.ui.statusLabel.text = STAGE_LABELS.get(event.stage, event.stage) + "..."
        if not task.job.finished:
            return
        self._timer.stop()
        self._task = None
        self._checkCanApply()
        if task.job.state is JobState.CANCELLED:
            return
        self.ui.statusLabel.text = _("Failed: nothing was added to the scene.")
        with reportingErrors(_("The synthesis failed:")):
            nodes = self.logic.finish(task, confirm=self._confirmWarnings)
            if not nodes:
                self.ui.statusLabel.text = _("Not added: the inputs are unlike the bundle's training data.")
                return
            self.ui.statusLabel.text = _("Added: {names}.").format(names=", ".join(node.GetName() for node in nodes))
            slicer.util.setSliceViewerLayers(background=nodes[0], fit=True)

    @staticmethod
    def _confirmWarnings(warnings: str) -> bool:
        """Show what the run warned about before its results enter the scene; the user decides."""
        return slicer.util.confirmYesNoDisplay(
            warnings + "\n\n" + _("Add the synthetic images to the scene anyway? (Their provenance records the "
                                    "warning.)"),
            windowTitle=_("SynthMR: inputs unlike the training data"))

    def _cancelTask(self) -> None:
        if self._task is not None:
            self._timer.stop()
            self.logic.cancel(self._task)
            self._task = None
            self.ui.progressBar.value = 0
            self._checkCanApply()


#
# Logic
#


@dataclass
class SynthesisTask:
    """One started synthesis: its job and what :meth:`SynthMRLogic.finish` needs to put the results in the scene.

    Args:
        toolDescription: the bundle's tool description.
        job: the running job.
        workFolder: the temporary folder holding the input files and the outputs; removed by finish and cancel.
        referenceNodeID: the reference volume node, whose geometry the outputs get.
    """

    toolDescription: ToolDescription
    job: SynthesisJob
    workFolder: Path
    referenceNodeID: str


class SynthMRLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable without its panel (from the Python console or another module).

    ``start`` checks the chosen nodes, writes them as files on the reference grid and starts the job; ``finish``
    loads its outputs; ``process`` does both and waits.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self) -> SynthMRParameterNode:
        return SynthMRParameterNode(super().getParameterNode())

    # Bundles and the parameter node

    @staticmethod
    def discoverBundles(added: list[str], userFolder: str | None, cacheFolder: str) -> list[BundleEntry]:
        """The bundles the user added, those of the user folder, and the shipped ones (see SynthMRLib.bundles)."""
        return discover_bundles(added, userFolder, cacheFolder)

    @staticmethod
    def resolveBundle(path: str, cacheFolder: str) -> Path:
        """The bundle folder of a folder or zip the user points to (a zip is unpacked into ``cacheFolder``)."""
        from SynthMRLib import resolve_bundle

        return resolve_bundle(path, cacheFolder)

    @staticmethod
    def inputNode(parameterNode: SynthMRParameterNode, role: str):
        """The node chosen for input ``role``, or None."""
        return parameterNode.parameterNode.GetNodeReference(INPUT_REFERENCE_PREFIX + role)

    @staticmethod
    def setInputNode(parameterNode: SynthMRParameterNode, role: str, node) -> None:
        parameterNode.parameterNode.SetNodeReferenceID(INPUT_REFERENCE_PREFIX + role, node.GetID() if node else None)

    # Dependencies

    def installDependencies(self, askConfirmation: bool = True) -> bool:
        """Make sure PyTorch, MONAI and synthmr are installed in Slicer's Python; True when they are.

        synthmr comes from the wheel packaged with the extension, or from the checkout the module runs from; never by
        name from a package index (SynthMRLib.dependencies). First the preflight: a Python older than synthmr needs,
        an installed PyTorch outside its range, or no PyTorch and no PyTorch extension stops here with one message,
        before anything is installed. PyTorch is installed only by the PyTorch extension's PyTorchUtils (it picks the
        build for the GPU driver), within synthmr's range. Then the plan (what pip installs, from where, what it
        keeps) is shown and, once the user confirms, pip installs synthmr and MONAI constrained so that it keeps
        Slicer's NumPy and SimpleITK and the extension's PyTorch. Nothing is imported to check: Slicer's own process
        never loads PyTorch.
        """
        missing = dependencies.missing_modules()
        update = dependencies.synthmr_update()
        if not missing and update is None:
            return True
        source = dependencies.synthmr_source()  # raises when the extension carries no wheel and there is no checkout
        self._raiseProblems(dependencies.preflight(source))
        if "torch" in missing:
            import PyTorchUtils  # the preflight made sure the PyTorch extension is there

            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=askConfirmation, torchVersionRequirement=source.torch_requirement or None
            )
            if torch is None:  # the user declined
                return False
            self._raiseProblems(dependencies.preflight(source))
        plan = dependencies.install_plan()
        if not plan.missing and update is None:
            return True
        question = (
            _("SynthMR needs {modules}, which are not installed in Slicer's Python yet. Install them now with pip "
              "(a few hundred MB)?").format(modules=", ".join(plan.missing))
            if plan.missing
            else _("Update synthmr from {installed} to {packaged}, the version this extension carries?").format(
                installed=update[0], packaged=update[1]
            )
        )
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(question, detailedText=plan.describe()):
            return False
        with tempfile.TemporaryDirectory(prefix="SynthMR-") as folder:
            constraints = Path(folder) / "constraints.txt"
            constraints.write_text(plan.constraints, encoding="utf-8")
            slicer.util.pip_install(plan.pip_arguments(str(constraints)))
        still = dependencies.missing_modules()
        if still:
            raise SynthMRError(
                _("pip finished but {modules} still cannot be imported; see the Python console.").format(
                    modules=", ".join(still)
                )
            )
        return True

    @staticmethod
    def _raiseProblems(problems: list[str]) -> None:
        if problems:
            raise SynthMRError(_("nothing was installed: {problems}.").format(problems="; ".join(problems)))

    # Scene -> files

    def sceneInputs(self, toolDescription: ToolDescription, nodes: dict[str, object]) -> dict[str, SceneInput]:
        """The chosen nodes as arrays on the reference grid, checked against the bundle (SynthMRLib.validation).

        Segmentations are exported onto the reference volume's grid; volumes and labelmap volumes must already be on
        it. Nodes under a transform are refused: their voxels would be in another place than their arrays say.

        Raises:
            SynthMRError: a node of the wrong kind, under a transform, or not fitting its role (one message).
        """
        check_roles(toolDescription, nodes)
        reference = nodes[toolDescription.reference]
        if not reference.IsA("vtkMRMLVolumeNode"):
            raise SynthMRError(
                f"input {toolDescription.reference!r} ({reference.GetName()}): is the reference whose grid the outputs get; "
                "choose a volume, not a segmentation"
            )
        inputs = {}
        for name, node in nodes.items():
            role = toolDescription.inputs[name]
            self._checkNode(role, node)
            if node.IsA("vtkMRMLSegmentationNode"):
                array, ijkToRAS = self.segmentationArray(role, node, reference), self.ijkToRAS(reference)
            else:
                array, ijkToRAS = slicer.util.arrayFromVolume(node), self.ijkToRAS(node)
            inputs[name] = SceneInput(node.GetName(), array, ijkToRAS)
        check_inputs(toolDescription, inputs)
        return inputs

    @staticmethod
    def _checkNode(role: InputRole, node) -> None:
        what = f"input {role.name!r} ({node.GetName()})"
        if role.kind == "volume":
            if not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
                raise SynthMRError(f"{what}: is a {node.GetClassName()}; choose a scalar volume")
        elif not any(node.IsA(className) for className in LABELMAP_CLASSES):
            raise SynthMRError(f"{what}: is a {node.GetClassName()}; choose a labelmap volume or a segmentation")
        transform = node.GetParentTransformNode()
        if transform is not None:
            raise SynthMRError(
                f"{what}: is under the transform {transform.GetName()}; harden it first (Data module: right-click "
                "the node, Harden transform) or move the node out of it"
            )

    @staticmethod
    def ijkToRAS(volumeNode) -> np.ndarray:
        matrix = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(matrix)
        return slicer.util.arrayFromVTKMatrix(matrix)

    def segmentationArray(self, role: InputRole, segmentationNode, referenceNode) -> np.ndarray:
        """A segmentation as one labelmap array ``(K, J, I)`` on the reference volume's grid.

        Each segment is resampled (nearest neighbour, cropped to the reference's extent) onto the reference grid
        without adding any node to the scene, and gets the label value
        :func:`~SynthMRLib.validation.segment_label_values` gives its name.
        """
        from vtk.util.numpy_support import vtk_to_numpy

        segmentation = segmentationNode.GetSegmentation()
        segmentIds = [segmentation.GetNthSegmentID(index) for index in range(segmentation.GetNumberOfSegments())]
        names = [segmentation.GetSegment(segmentId).GetName() for segmentId in segmentIds]
        values = segment_label_values(role, segmentationNode.GetName(), names)
        segmentationNode.CreateBinaryLabelmapRepresentation()
        referenceGeometry = slicer.vtkOrientedImageData()
        referenceGeometry.SetExtent(referenceNode.GetImageData().GetExtent())
        matrix = vtk.vtkMatrix4x4()
        referenceNode.GetIJKToRASMatrix(matrix)
        referenceGeometry.SetImageToWorldMatrix(matrix)
        shape = tuple(reversed(referenceNode.GetImageData().GetDimensions()))
        masks = []
        for segmentId, name in zip(segmentIds, names):
            layer, resampled = slicer.vtkOrientedImageData(), slicer.vtkOrientedImageData()
            # Segments may share one labelmap layer, each with its own value in it: the segment is that value.
            if not slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
                segmentationNode, segmentId, layer
            ):
                raise SynthMRError(f"input {role.name!r} ({segmentationNode.GetName()}): segment {name!r} cannot be "
                                   "turned into voxels")
            if layer.IsEmpty():
                masks.append((name, np.zeros(shape, np.uint8)))
                continue
            slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
                layer, referenceGeometry, resampled, False, False
            )
            voxels = vtk_to_numpy(resampled.GetPointData().GetScalars()).reshape(shape)
            masks.append((name, voxels == segmentation.GetSegment(segmentId).GetLabelValue()))
        return combine_segments(role, segmentationNode.GetName(), masks, values)

    def lesionEditRequest(self, toolDescription: ToolDescription, settings: LesionEditSettings | None, referenceNode,
                          inputFolder: Path) -> LesionEditRequest | None:
        """The edits in voxel (IJK) units; a transplant donor is written as a file on the reference grid."""
        if settings is None:
            return None
        ijkToRAS = self.ijkToRAS(referenceNode)
        translate = None
        if settings.translate is not None:
            offset = np.asarray(settings.translate, dtype=float)
            if settings.translateUnit == "mm":
                offset = ras_vector_to_ijk(offset, ijkToRAS)
            elif settings.translateUnit != "voxel":
                raise SynthMRError(f"translation unit {settings.translateUnit!r}: use mm or voxel")
            translate = tuple(float(value) for value in offset)
        donorFile = centre = None
        if settings.donor is not None:
            # The donor takes the lesion's labels, and must not be empty.
            lesion = toolDescription.inputs[toolDescription.lesion]
            donorRole = dataclasses.replace(lesion, name="transplant donor", required=True)  # a donor must hold a lesion
            self._checkNode(donorRole, settings.donor)
            donor = self._labelmapInput(donorRole, settings.donor, referenceNode)
            check_labelmap(toolDescription, donorRole, donor)
            donorFile = write_nrrd(inputFolder / "transplant_donor.nrrd", donor.array, ijkToRAS)
            if settings.centre is not None:
                if settings.centre.GetNumberOfControlPoints() < 1:
                    raise SynthMRError(f"transplant centre ({settings.centre.GetName()}): has no point; place one")
                position = [0.0, 0.0, 0.0]
                settings.centre.GetNthControlPointPositionWorld(0, position)
                centre = tuple(float(value) for value in ras_point_to_ijk(position, ijkToRAS))
        request = LesionEditRequest(translate, settings.scale, settings.mirror, donorFile, centre)
        return request if request.requested else None

    def _labelmapInput(self, role: InputRole, node, referenceNode) -> SceneInput:
        """A labelmap volume (which must be on the reference grid) or a segmentation, as a labelmap on that grid."""
        if node.IsA("vtkMRMLSegmentationNode"):
            return SceneInput(node.GetName(), self.segmentationArray(role, node, referenceNode),
                              self.ijkToRAS(referenceNode))
        scene = SceneInput(node.GetName(), slicer.util.arrayFromVolume(node), self.ijkToRAS(node))
        reference = SceneInput(referenceNode.GetName(), slicer.util.arrayFromVolume(referenceNode),
                               self.ijkToRAS(referenceNode))
        difference = grid_difference(scene, reference)
        if difference:
            raise SynthMRError(f"{role.name} ({node.GetName()}): is not on the grid of {referenceNode.GetName()}: "
                               f"{difference}")
        return scene

    # Running

    def start(
        self,
        toolDescription: ToolDescription,
        nodes: dict[str, object],
        device: str = "cpu",
        edits: LesionEditSettings | None = None,
        workFolder: str | os.PathLike | None = None,
        python: str | None = None,
    ) -> SynthesisTask:
        """Check the inputs, write them on the reference grid and start the job; returns at once.

        Args:
            toolDescription: the bundle's tool description.
            nodes: input role -> chosen node.
            device: "cpu" or "cuda".
            edits: lesion edits, or None.
            workFolder: a new or empty folder for the temporary files (default: a new one in Slicer's temporary
                folder); removed when the task is finished or cancelled.
            python: the Python that runs synthmr (default: PythonSlicer, else this Python).

        Raises:
            SynthMRError: an input does not fit the bundle, or an edit is not possible; nothing is started then.
        """
        if workFolder is not None and Path(workFolder).is_dir() and any(Path(workFolder).iterdir()):
            raise SynthMRError(f"{workFolder}: the work folder must be new or empty (it is deleted after the run)")
        inputs = self.sceneInputs(toolDescription, nodes)
        reference = nodes[toolDescription.reference]
        folder = Path(workFolder) if workFolder is not None else self._newTemporaryFolder()
        try:
            inputFolder = folder / "inputs"
            inputFolder.mkdir(parents=True)
            paths = {name: write_nrrd(inputFolder / f"{name}.nrrd", value.array, value.ijk_to_ras)
                     for name, value in inputs.items()}
            job = SynthesisJob(
                toolDescription,
                paths,
                folder / "outputs",
                device=device,
                edits=self.lesionEditRequest(toolDescription, edits, reference, inputFolder),
                python=python or shutil.which("PythonSlicer") or sys.executable,
                env=slicer.util.startupEnvironment() if hasattr(slicer, "app") else None,
                input_names={name: f"scene node {value.name!r}" for name, value in inputs.items()},
            )
            job.start()
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        logging.info("SynthMR: running %s", " && ".join(" ".join(command) for command in job.commands()))
        return SynthesisTask(toolDescription, job, folder, reference.GetID())

    @staticmethod
    def _newTemporaryFolder() -> Path:
        """A new folder in Slicer's temporary folder (the system's outside the application)."""
        parent = slicer.app.temporaryPath if hasattr(slicer, "app") else None
        return Path(tempfile.mkdtemp(prefix="SynthMR-", dir=parent))

    def cancel(self, task: SynthesisTask) -> None:
        """Stop the task's processes (the whole tree) and remove its files; the scene is left as it was."""
        task.job.cancel()
        shutil.rmtree(task.workFolder, ignore_errors=True)

    def finish(self, task: SynthesisTask, confirm: Callable[[str], bool] | None = None) -> list:
        """Add the outputs of a finished task to the scene, on the reference volume's geometry, all or none.

        When the run warned that the inputs are unlike the bundle's training data, ``confirm(warnings)`` is asked
        first, before anything is added: False adds nothing and returns an empty list (None: add them; their
        provenance records the check either way).

        Output role ``r`` becomes the node "<bundle> r (synthetic)": a scalar volume, or a labelmap volume for a
        labelmap role (a label map the bundle made with its images), tagged with the attributes ``SynthMR.synthetic``
        ("true") and ``SynthMR.provenance`` (the output's sidecar: bundle, version, weights and inputs with their
        SHA-256); an edited lesion becomes the labelmap node "<bundle> <lesion role> (edited)", tagged
        ``SynthMR.edited``, to show where the lesion went. The module shows a banner while a synthetic node is
        shown in a slice view (:meth:`shownSyntheticVolumes`).

        Raises:
            SynthMRError: the job failed (its one message), the reference node was deleted, or an output is not on
                the reference grid; no node is added then.
        """
        try:
            job = task.job
            if job.state is not JobState.SUCCEEDED:
                if job.log:
                    logging.error("SynthMR: output of the failed run:\n%s", "\n".join(job.log))
                raise SynthMRError(job.error or f"the synthesis did not finish ({job.state.value})")
            if job.warnings and confirm is not None and not confirm("\n".join(job.warnings)):
                return []
            reference = slicer.mrmlScene.GetNodeByID(task.referenceNodeID)
            if reference is None:
                raise SynthMRError("the reference volume was removed from the scene during the run")
            name = task.toolDescription.name
            loaded = []
            for role, spec in task.toolDescription.outputs.items():
                node = self._readOnGrid(job.outputs[role], f"{name} {role} (synthetic)", reference,
                                        labelmap=spec.kind == "labelmap")
                node.SetAttribute(SYNTHETIC_ATTRIBUTE, "true")
                node.SetAttribute(PROVENANCE_ATTRIBUTE, read_sidecar_text(job.outputs[role]))
                loaded.append(node)
            if job.edited_lesion is not None:
                node = self._readOnGrid(job.edited_lesion, f"{name} {task.toolDescription.lesion} (edited)",
                                        reference, labelmap=True)
                node.SetAttribute(EDITED_ATTRIBUTE, "true")
                node.SetAttribute(PROVENANCE_ATTRIBUTE, read_sidecar_text(job.edited_lesion))
                loaded.append(node)
            return self._addToScene(loaded)
        finally:
            shutil.rmtree(task.workFolder, ignore_errors=True)

    def process(self, toolDescription: ToolDescription, nodes: dict[str, object], progress=None, confirm=None,
                **options) -> list:
        """:meth:`start`, wait (passing each :class:`~SynthMRLib.process.Progress` to ``progress``), :meth:`finish`.

        Args:
            toolDescription: the bundle's tool description.
            nodes: input role -> chosen node.
            progress: called with each progress event, or None.
            confirm: asked whether to add outputs of a run that warned (:meth:`finish`), or None.
            options: the other arguments of :meth:`start` (device, edits, workFolder, python).
        """
        task = self.start(toolDescription, nodes, **options)
        task.job.wait(progress=progress)
        return self.finish(task, confirm)

    @staticmethod
    def _readOnGrid(path: Path, name: str, reference, labelmap: bool):
        """Read a file into a new volume node (not in the scene yet) with exactly the reference's geometry.

        Slicer's reader turns a left-handed grid into its right-handed equivalent (slice axis reversed); the voxels
        are put back in the reference's order, so the node has the reference's IJK-to-RAS and the same voxels.
        """
        nodeClass = slicer.vtkMRMLLabelMapVolumeNode if labelmap else slicer.vtkMRMLScalarVolumeNode
        read = nodeClass()
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storage.SetFileName(str(path))
        if not storage.ReadData(read) or read.GetImageData() is None:
            raise SynthMRError(f"{name}: Slicer cannot read the output file {path.name}")
        voxels = slicer.util.arrayFromVolume(read)
        expected = tuple(reversed(reference.GetImageData().GetDimensions()))
        try:
            ordered = on_reference_grid(voxels, SynthMRLogic.ijkToRAS(read), SynthMRLogic.ijkToRAS(reference),
                                        GRID_TOLERANCE_MM)
        except SynthMRError:
            ordered = None
        if ordered is None or ordered.shape != expected:
            raise SynthMRError(f"{name}: the bundle's output is not on the grid of {reference.GetName()}")
        # The file holds the geometry with rounding (32-bit floats in NIfTI); a fresh node given the reference's own
        # spacing, origin and axes has exactly its grid (setting them on the read node would keep values within
        # MRML's tolerance of the old ones).
        node = nodeClass()
        node.SetName(name)
        directions = vtk.vtkMatrix4x4()
        reference.GetIJKToRASDirectionMatrix(directions)
        node.SetIJKToRASDirectionMatrix(directions)
        node.SetSpacing(reference.GetSpacing())
        node.SetOrigin(reference.GetOrigin())
        if ordered is voxels:
            node.SetAndObserveImageData(read.GetImageData())
        else:
            slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(ordered))
        return node

    @staticmethod
    def shownSyntheticVolumes(scene=None) -> list[str]:
        """Names of the synthetic volumes some slice view shows (background, foreground or label layer)."""
        scene = scene or slicer.mrmlScene
        shown = []
        for composite in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode", scene):
            for nodeID in (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID(),
                           composite.GetLabelVolumeID()):
                node = scene.GetNodeByID(nodeID) if nodeID else None
                if node is not None and node.GetAttribute(SYNTHETIC_ATTRIBUTE) == "true" and node.GetName() not in shown:
                    shown.append(node.GetName())
        return shown

    @staticmethod
    def _addToScene(nodes: list) -> list:
        added = []
        try:
            for node in nodes:
                added.append(slicer.mrmlScene.AddNode(node))
                added[-1].CreateDefaultDisplayNodes()
        except Exception:
            for node in added:  # nothing half-added: the scene stays as it was
                slicer.mrmlScene.RemoveNode(node)
            raise
        return added


#
# Test
#


class SynthMRTest(ScriptedLoadableModuleTest):
    """The module's self-test (Reload & Test, and ctest inside Slicer).

    It needs no trained weights: it writes SynthMRLib's tiny test bundle, checks its toolDescription, the scene-to-file
    adapter on an oblique, anisotropic grid (read back with Slicer's own reader) and, when synthmr is installed,
    a whole run whose outputs must land on the input's geometry.
    """

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_SynthMR_scene_to_files_and_back()

    def test_SynthMR_scene_to_files_and_back(self) -> None:
        from SynthMRLib.testing import write_test_bundle

        with tempfile.TemporaryDirectory(prefix="SynthMRTest-") as folder:
            bundle = write_test_bundle(folder)
            toolDescription = read_tool_description(bundle)
            self.assertEqual(list(toolDescription.inputs), ["t1_pre", "liver", "tumor"])
            angle = np.deg2rad(25)
            ijkToRAS = np.array([[0.8 * np.cos(angle), -1.1 * np.sin(angle), 0, -30.0],
                                 [0.8 * np.sin(angle), 1.1 * np.cos(angle), 0, 12.5],
                                 [0, 0, -3.0, 40.0],
                                 [0, 0, 0, 1]])
            t1 = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
            liver = np.zeros(t1.shape, np.uint8)
            liver[:, 1:5, 1:7] = 1
            volume = slicer.util.addVolumeFromArray(t1, ijkToRAS, "t1 pre")
            mask = slicer.util.addVolumeFromArray(liver, ijkToRAS, "liver", "vtkMRMLLabelMapVolumeNode")
            logic = SynthMRLogic()
            inputs = logic.sceneInputs(toolDescription, {"t1_pre": volume, "liver": mask})
            written = write_nrrd(Path(folder) / "t1_pre.nrrd", inputs["t1_pre"].array, inputs["t1_pre"].ijk_to_ras)
            back = SynthMRLogic._readOnGrid(written, "read back", volume, labelmap=False)
            np.testing.assert_array_equal(slicer.util.arrayFromVolume(back), t1)
            if dependencies.missing_modules():
                self.delayDisplay("synthmr is not installed: the run itself was not tested")
                return
            trust_bundle(bundle)  # SynthMRLib's own test bundle, recorded by the digest of its code like any other
            nodes = logic.process(toolDescription, {"t1_pre": volume, "liver": mask}, workFolder=Path(folder) / "work")
            self.assertEqual([node.GetName() for node in nodes],
                             ["synthmr_test t1_post1 (synthetic)", "synthmr_test tumor_shown (synthetic)"])
            self.assertEqual(nodes[1].GetClassName(), "vtkMRMLLabelMapVolumeNode")
            for node in nodes:
                np.testing.assert_array_equal(self.ijkToRASOf(node), self.ijkToRASOf(volume))
            np.testing.assert_allclose(slicer.util.arrayFromVolume(nodes[0]), 2 * t1)
            self.assertFalse(slicer.util.arrayFromVolume(nodes[1]).any())  # no tumour given, none shown
        self.delayDisplay("SynthMR self-test passed")

    @staticmethod
    def ijkToRASOf(node) -> np.ndarray:
        return SynthMRLogic.ijkToRAS(node)
