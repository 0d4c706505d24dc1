"""Every exercise the protocol offers has its own committed classifier, and a processor switched to it runs it.

No stand-in: an exercise without a model of its own (as lunge once was, running the squat model) would be
refused here. The processor is real except for its pose estimator, which ``switch_exercise`` never touches.
"""

from __future__ import annotations

from typing import Any, cast, get_args

import pytest

from formcheck_edge.classifier import PhaseFormClassifier
from formcheck_edge.config import load_config
from formcheck_edge.processor import FrameProcessor
from formcheck_protocol.messages import Exercise
from formcheck_runtime.paths import classifier_model

EXERCISES: tuple[Exercise, ...] = get_args(Exercise)


@pytest.mark.parametrize("exercise", EXERCISES)
def test_each_exercise_has_its_own_model(exercise: Exercise) -> None:
    classifier = PhaseFormClassifier(classifier_model(exercise))
    assert classifier.manifest.exercise == exercise
    assert classifier.version.startswith(f"{exercise}_phase_form@")
    assert classifier.manifest.held_out is not None, "every shipped model carries its held-out figures"


@pytest.mark.parametrize("exercise", [e for e in EXERCISES if e != "squat"])
def test_switching_exercise_loads_that_exercises_model(exercise: Exercise) -> None:
    config = load_config(None, {"node": {"id": "rack-1", "exercise": "squat"}}, environ={})
    processor = FrameProcessor(config=config, boot="0123abcd", exercise="squat", pose=cast(Any, None),
                               classifiers={"squat": PhaseFormClassifier(classifier_model("squat"))})
    assert processor.switch_exercise(exercise)
    assert processor.exercise == exercise
    assert processor.classifier.manifest.exercise == exercise
    assert set(processor.classifiers) == {"squat", exercise}
