"""The board a worker process shares with its supervisor: what runs where, since when."""

import os
import uuid

import pytest

from django_tasks_db.worker.board import Board


def test_a_slot_shows_its_run_until_it_finishes() -> None:
    section = Board(processes=2, slots=3).section(1)
    assert section.running() == []
    task, token = uuid.uuid4(), uuid.uuid4()
    section.start(2, task, token, 1.5)
    section.start(0, uuid.uuid4(), None, None)
    entries = {entry.task_id: entry for entry in section.running()}
    assert entries[task].claim_token == token and entries[task].timeout == 1.5
    assert 0 <= entries[task].elapsed() < 5
    section.finish(2)
    assert [entry.timeout for entry in section.running()] == [None]
    section.clear()
    assert section.running() == []


def test_sections_are_separate_and_bounded() -> None:
    board = Board(processes=2, slots=1)
    board.section(0).start(0, uuid.uuid4(), None, None)
    assert board.section(1).running() == []
    with pytest.raises(IndexError):
        board.section(2)
    with pytest.raises(IndexError):
        board.section(0).start(1, uuid.uuid4(), None, None)


def test_a_forked_process_writes_what_its_parent_reads() -> None:
    board = Board(processes=1, slots=1)
    section = board.section(0)
    task = uuid.uuid4()
    pid = os.fork()
    if pid == 0:  # the "worker process"
        section.start(0, task, None, 2.0)
        os._exit(0)
    os.waitpid(pid, 0)  # it wrote before it exited
    assert [entry.task_id for entry in section.running()] == [task]
