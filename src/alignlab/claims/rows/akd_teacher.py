"""Row 8b — AKD with the built-in teacher (5.5M) teaching the student (1M) on the digit-constant
exercises, where the teacher leads; the same measurement as row 8 (rows/akd.py)."""

from alignlab.claims.rows.akd import TEACHER_STUDENT, make_row

ROW = make_row(TEACHER_STUDENT)
