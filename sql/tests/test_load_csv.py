"""CSV bulk load: the whole batch lands in one transaction, or nothing does."""

import csv

from conftest import census


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_a_valid_file_is_loaded_whole_and_reported(server, database, run_op, tmp_path):
    rows = [(200000000 + i, i % 101) for i in range(1, 5001)]
    path = write_csv(tmp_path / "results.csv", ["roll_number", "marks"], rows)

    result = run_op("load-csv.sh", str(path), "2026", database=database)

    assert result.returncode == 0, result.stderr + result.stdout
    assert "records in file: 5000" in result.stdout
    assert "rejected:        0" in result.stdout
    assert "loaded:          5000 rows" in result.stdout
    loaded = server.query(database, "SELECT roll_number, marks FROM student_results_2026 ORDER BY roll_number")
    assert [(int(r), int(m)) for r, m in loaded] == rows


def test_columns_may_come_in_any_order_with_a_matching_exam_year_column(server, database, run_op, tmp_path):
    path = write_csv(tmp_path / "r.csv", ["marks", "exam_year", "roll_number"],
                     [(40, 2025, 7), (0, 2025, 8), (100, 2025, 9)])
    result = run_op("load-csv.sh", str(path), "2025", database=database)
    assert result.returncode == 0, result.stderr
    assert server.query(database, "SELECT roll_number, marks, exam_year FROM student_results ORDER BY 1") == [
        ["7", "40", "2025"], ["8", "0", "2025"], ["9", "100", "2025"]]


def test_one_bad_record_rejects_the_whole_batch_and_the_report_names_every_reason(server, database, run_op, tmp_path):
    server.psql(database, "INSERT INTO student_results VALUES (300000005, 71, 2026)")
    before = census(server, database)
    rows = [
        (300000001, 50, 2026),   # 1 good
        (300000002, 101, 2026),  # 2 marks too high
        (300000003, -1, 2026),   # 3 marks negative
        (300000004, "abc", 2026),  # 4 marks not a number
        (300000005, 60, 2026),   # 5 already in the database
        (300000006, 60, 2026),   # 6 duplicate in file
        (300000006, 61, 2026),   # 7 duplicate in file
        (0, 10, 2026),           # 8 roll number zero
        ("12x", 10, 2026),       # 9 roll number not a number
        (300000010, 10, 2025),   # 10 wrong year
        ("", 10, 2026),          # 11 roll number missing
        (300000012, "", 2026),   # 12 marks missing
        (300000013, 99, 2026),   # 13 good
    ]
    path = write_csv(tmp_path / "bad.csv", ["roll_number", "marks", "exam_year"], rows)
    rejects = tmp_path / "rejects.csv"

    result = run_op("load-csv.sh", str(path), "2026", database=database, REJECTS_FILE=str(rejects))

    assert result.returncode == 1, result.stderr + result.stdout
    out = result.stdout
    assert "records in file: 13" in out
    assert "rejected:        11" in out
    assert "NOTHING WAS LOADED" in out
    for reason in ("marks must be between 0 and 100", "marks is not a whole number",
                   "a result for this exam_year and roll_number already exists",
                   "roll_number appears 2 times in the file", "roll_number must be at least 1",
                   "roll_number is not a whole number", "exam_year is not 2026",
                   "roll_number is missing", "marks is missing"):
        assert reason in out, reason
    with open(rejects) as f:
        by_record = {int(r["record"]): r["reason"] for r in csv.DictReader(f)}
    assert sorted(by_record) == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert by_record[2] == "marks must be between 0 and 100"
    assert by_record[5] == "a result for this exam_year and roll_number already exists"
    assert by_record[10] == "exam_year is not 2026"
    # Nothing landed, not even the good records.
    assert census(server, database) == before
    assert server.scalar(database, "SELECT count(*) FROM student_results_2026") == "1"


def test_a_failure_during_the_insert_rolls_back_every_row(server, database, run_op, tmp_path):
    # A trigger that fails on the 3000th row stands in for anything that breaks
    # mid-insert (a concurrent writer taking a key, the disk filling up).
    server.psql(database, """
        CREATE FUNCTION fail_late() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.roll_number = 400003000 THEN RAISE EXCEPTION 'simulated failure mid-batch'; END IF;
              RETURN NEW; END $$;
        CREATE TRIGGER fail_late BEFORE INSERT ON student_results_2026 FOR EACH ROW EXECUTE FUNCTION fail_late();
    """)
    path = write_csv(tmp_path / "r.csv", ["roll_number", "marks"], [(400000000 + i, 50) for i in range(1, 5001)])

    result = run_op("load-csv.sh", str(path), "2026", database=database)

    assert result.returncode == 2
    assert "simulated failure mid-batch" in result.stderr
    assert "NOTHING WAS LOADED" in result.stderr
    assert server.scalar(database, "SELECT count(*) FROM student_results_2026") == "0"


def test_loading_into_a_year_without_a_partition_fails_clearly(server, database, run_op, tmp_path):
    path = write_csv(tmp_path / "r.csv", ["roll_number", "marks"], [(1, 50)])
    result = run_op("load-csv.sh", str(path), "2090", database=database)
    assert result.returncode == 2
    assert "make partitions YEAR=2090" in result.stderr
    assert server.scalar(database, "SELECT count(*) FROM student_results") == "0"


def test_a_header_with_unknown_or_missing_columns_is_refused_before_connecting(server, database, run_op, tmp_path):
    unknown = write_csv(tmp_path / "u.csv", ["roll_number", "grade"], [(1, 50)])
    result = run_op("load-csv.sh", str(unknown), "2026", database=database)
    assert result.returncode == 2 and "unknown column 'grade'" in result.stderr
    missing = write_csv(tmp_path / "m.csv", ["roll_number"], [(1,)])
    result = run_op("load-csv.sh", str(missing), "2026", database=database)
    assert result.returncode == 2 and "no 'marks' column" in result.stderr


def test_a_quoted_value_with_a_comma_is_one_field_and_is_rejected_not_split(server, database, run_op, tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('roll_number,marks\n5,"7,5"\n6,80\n')
    result = run_op("load-csv.sh", str(path), "2026", database=database)
    assert result.returncode == 1
    assert "marks is not a whole number" in result.stdout
    assert server.scalar(database, "SELECT count(*) FROM student_results") == "0"


def test_a_file_name_with_spaces_and_quotes_loads(server, database, run_op, tmp_path):
    path = write_csv(tmp_path / "results it's 2026.csv", ["roll_number", "marks"], [(11, 50), (12, 60)])
    result = run_op("load-csv.sh", str(path), "2026", database=database)
    assert result.returncode == 0, result.stderr
    assert server.scalar(database, "SELECT count(*) FROM student_results_2026") == "2"


def test_a_spreadsheet_export_with_windows_line_endings_and_a_byte_order_mark_loads(server, database, run_op, tmp_path):
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"\xef\xbb\xbfroll_number,marks\r\n21,40\r\n22,41\r\n")
    result = run_op("load-csv.sh", str(path), "2026", database=database)
    assert result.returncode == 0, result.stderr + result.stdout
    assert server.query(database, "SELECT roll_number, marks FROM student_results_2026 ORDER BY 1") == [
        ["21", "40"], ["22", "41"]]
