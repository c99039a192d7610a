"""Japanese and English texts of the input contract: reason codes, details, flags, errors and reports."""

from __future__ import annotations

from collections.abc import Mapping

from compute.i18n import register


def check_kind_params(
    kind_label: str, kind: str, params: Mapping[str, object], declared: Mapping[str, tuple[str, ...]], catalogue: str,
) -> None:
    """Raise ``ValueError`` unless ``kind`` is declared in ``declared`` and ``params`` have exactly
    its parameter names. ``kind_label`` and ``catalogue`` name the kind and the table in the message."""
    names = declared.get(kind)
    if names is None:
        raise ValueError(f"{kind_label} {kind!r} is not declared in {catalogue}. Declared kinds: {sorted(declared)}")
    if set(params) != set(names):
        raise ValueError(f"{kind_label} {kind!r} takes parameters {list(names)}, got {sorted(params)}")


# code: (meaning ja, meaning en, action ja, action en)
_REASONS: dict[str, tuple[str, str, str, str]] = {
    "key_missing": (
        "行のキー (trip_id、vehicle_id、feature_id、または tachometer の vehicle_id と ts) が空です。",
        "The row key (trip_id, vehicle_id, feature_id, or vehicle_id with ts in tachometer) is null or empty.",
        "すべての行にキーを入れてください。",
        "Fill in the key on every row.",
    ),
    "key_duplicated": (
        "同じキーがその日のデータに 2 回以上あり、その行の内容が異なります。どれが正しいか判断できないため、同じキーを持つ行はすべて除外されます。",
        "The same key occurs more than once in the day, in rows whose content differs. None can be trusted as the right one, so every row with that key is rejected.",
        "キーを一意にするか、重複した行を 1 行にまとめてください。",
        "Make the key unique, or merge the duplicated rows into one.",
    ),
    "row_repeated": (
        "同じ行 (すべての列の値が同じ) がその日のデータにもう一度あります。最初の 1 行を採用し、この行は除外しました。",
        "The same row, equal in every column, occurs again in the day. The first copy is kept and this copy is rejected.",
        "重複して送られた行を納品データから削除してください。",
        "Remove the repeated copy from the delivery.",
    ),
    "value_missing": (
        "必須の値 (trajectories の vehicle_id、tachometer の speed_kmh、geo_attributes の source) が空です。",
        "A required value is null (vehicle_id in trajectories, speed_kmh in tachometer, source in geo_attributes).",
        "列に値を入れてください。",
        "Fill in the value.",
    ),
    "vehicle_not_in_master": (
        "vehicle_id が、vehicles (車両マスタ) の採用された行にありません。車両が vehicles にないか、その車両の行が検証で除外されています。",
        "The vehicle_id is not among the accepted rows of the vehicles master: the vehicle is missing from vehicles, or its row there was rejected.",
        "詳細に車両マスタの行の除外理由がある場合は、vehicles のその行を直してください。ない場合は、その車両を vehicles に追加するか、vehicle_id の綴りを直してください。",
        "If the detail names the reason the vehicle's row was rejected, correct that row of vehicles. "
        "Otherwise add the vehicle to vehicles, or correct the vehicle_id.",
    ),
    "geometry_missing": (
        "ジオメトリが空 (null) です。",
        "The geometry is null.",
        "各行に WKB のジオメトリを入れてください。",
        "Write a WKB geometry on every row.",
    ),
    "geometry_too_large": (
        "1 つのトリップの頂点が上限 (contract.thresholds.max_vertices_per_trip) を超えています。この行のジオメトリと時刻は読まずに除外しました。",
        "The trip has more vertices than the limit (contract.thresholds.max_vertices_per_trip); its geometry and times were not read.",
        "トリップを時間で区切って複数のトリップにするか、頂点を間引いてください (モデルには 1 Hz で足ります)。"
        "上限を上げるのは、ワーカーのメモリも増やすときだけにしてください。",
        "Split the trip by time into several trips, or thin its vertices (1 Hz is enough for the model). "
        "Raise the limit only together with the workers' memory.",
    ),
    "geometry_unreadable": (
        "ジオメトリの WKB を読めません。",
        "The geometry WKB cannot be decoded.",
        "GeoParquet (WKB) を書き出すライブラリで出力し直してください。",
        "Write the file again with a GeoParquet (WKB) writer.",
    ),
    "geometry_wrong_type": (
        "ジオメトリの種類が違います (trajectories は LineString、geo_attributes は Polygon / MultiPolygon / LineString / MultiLineString)。",
        "The geometry type is not allowed (LineString for trajectories; Polygon, MultiPolygon, LineString or MultiLineString for geo_attributes).",
        "許可された種類で出力してください。",
        "Write the geometry as one of the allowed types.",
    ),
    "geometry_empty": (
        "ジオメトリが空 (EMPTY) です。",
        "The geometry is empty.",
        "頂点のない行を削除するか、座標を入れてください。",
        "Drop rows without vertices, or write their coordinates.",
    ),
    "geometry_single_point": (
        "線の頂点が 1 点しかないか、すべての頂点が同じ位置です。線に長さがありません。",
        "The line has one vertex, or all its vertices are the same point, so it has no length.",
        "トリップや道路リンクの線は、異なる位置の頂点を 2 つ以上含めて出力してください。長さのない線の行は削除してください。",
        "Write each trip or road link with at least two distinct vertices, or drop the row when its line has no length.",
    ),
    "geometry_invalid": (
        "ジオメトリが不正で、修復もできません (NaN の座標、修復後に面が残らないポリゴンなど)。",
        "The geometry is invalid and cannot be repaired (NaN coordinates, or a polygon with no area left after repair).",
        "座標を確認し、正しいジオメトリを出力してください。",
        "Check the coordinates and write a valid geometry.",
    ),
    "coordinate_out_of_range": (
        "座標が経度 -180〜180、緯度 -90〜90 の範囲外です。",
        "A coordinate is outside longitude -180..180 or latitude -90..90.",
        "CRS が EPSG:4326 か、設定の crs が正しいか、経度と緯度の順序 (x が経度) を確認してください。",
        "Check that the CRS is EPSG:4326 or that the configured crs is right, and that x is longitude.",
    ),
    "coordinate_null_island": (
        "頂点が (0, 0) にあります。GPS の測位失敗を示すことが多い値です。",
        "A vertex lies at (0, 0), which usually means a failed GPS fix.",
        "測位できなかった頂点を削除してから出力してください。",
        "Drop vertices without a GPS fix before writing the file.",
    ),
    "time_missing": (
        "timestamps がなく、start_time または end_time も空です。",
        "The trip has no timestamps, and start_time or end_time is null.",
        "頂点ごとの timestamps、または start_time と end_time を入れてください。",
        "Write per-vertex timestamps, or both start_time and end_time.",
    ),
    "timestamp_count_mismatch": (
        "timestamps の数が頂点数と一致しないか、空の要素を含みます。",
        "The number of timestamps differs from the number of vertices, or a timestamp is null.",
        "頂点ごとに 1 つずつ timestamps を出力してください。",
        "Write exactly one timestamp per vertex.",
    ),
    "timestamp_out_of_range": (
        "時刻が min_time から max_time の範囲の外です (単位や基準時刻の誤りの可能性があります)。",
        "A time is outside min_time to max_time (often a wrong epoch unit or origin).",
        "時刻の単位 (秒、ミリ秒、マイクロ秒、ナノ秒) と基準時刻を確認してください。",
        "Check the unit (s, ms, us, ns) and origin of the times.",
    ),
    "timestamp_backwards": (
        "時刻が前に戻っています (timestamps が減少、または end_time が start_time より前)。",
        "Time goes backwards (a timestamp decreases, or end_time is before start_time).",
        "頂点を時刻順に並べ、時刻のずれ (時差の二重適用など) を確認してください。",
        "Sort vertices by time and check for clock or time-zone errors.",
    ),
    "speed_implausible": (
        "速度が上限 (設定 max_speed_kmh) を超えています。GPS の飛びや時刻の誤りが考えられます。",
        "A speed is above the limit (setting max_speed_kmh); likely a GPS jump or a wrong timestamp.",
        "飛んだ頂点を削除するか、速度の単位 (km/h か m/s) と時刻を確認してください。",
        "Drop jumping vertices, or check the speed unit (km/h or m/s) and the timestamps.",
    ),
    "value_negative": (
        "負になり得ない値 (積載量、速度、回転数、最大積載量) が負です。",
        "A value that cannot be negative (load, speed, engine speed, payload) is negative.",
        "値と符号を確認してください。",
        "Check the value and its sign.",
    ),
    "value_out_of_range": (
        "値が妥当な範囲外です (カタログ燃費、年式、回転数、制限速度、勾配、積載量)。範囲は設定 thresholds にあります。",
        "A value is outside its plausible range (catalog fuel economy, model year, engine speed, speed limit, gradient, load); the ranges are in the thresholds settings.",
        "値と単位を確認してください (例: 燃費は km/L、勾配は %)。",
        "Check the value and its unit (e.g. fuel economy in km/l, gradient in %).",
    ),
    "fuel_negative": (
        "fuel_ml (前回の記録からの燃料使用量) が負です。",
        "fuel_ml (fuel used since the previous record) is negative.",
        "累積値ではなく、前回の記録からの差分を出力してください。",
        "Send the fuel used since the previous record, not a running total that resets.",
    ),
    "fuel_implausible": (
        "fuel_ml が前回の記録からの時間に対して多すぎます (設定 max_fuel_rate_l_per_h を超過)。",
        "fuel_ml is too large for the time since the previous record (above setting max_fuel_rate_l_per_h).",
        "累積値を送っていないか、単位 (mL か L) を確認してください。",
        "Check that the value is not a running total, and that the unit is ml, not l.",
    ),
    "vehicle_class_unknown": (
        "vehicle_class が契約の値 (kei_passenger, passenger, bus, kei_truck, light_truck, medium_truck, heavy_truck) にありません。",
        "vehicle_class is not one of kei_passenger, passenger, bus, kei_truck, light_truck, medium_truck, heavy_truck.",
        "値を直すか、設定 contract.vehicles.values で変換を定義してください。",
        "Correct the value, or map it in the setting contract.vehicles.values.",
    ),
    "fuel_type_unknown": (
        "fuel_type が契約の値 (gasoline, diesel, hybrid, lpg, cng, electric) にありません。",
        "fuel_type is not one of gasoline, diesel, hybrid, lpg, cng, electric.",
        "値を直すか、設定 contract.vehicles.values で変換を定義してください。",
        "Correct the value, or map it in the setting contract.vehicles.values.",
    ),
    "test_cycle_unknown": (
        "test_cycle が JC08、WLTC、JH25 のいずれでもありません。",
        "test_cycle is not one of JC08, WLTC, JH25.",
        "値を直すか、空にしてください (空の場合はカタログ燃費の試験モードが不明として扱います)。",
        "Correct the value, or leave it null when the test cycle is not known.",
    ),
}

_FLAGS: dict[str, tuple[str, str, str, str]] = {
    "geometry_repaired": (
        "不正なポリゴンを shapely.make_valid で修復して採用しました。",
        "An invalid polygon was repaired with shapely.make_valid and kept.",
        "元データのポリゴン (自己交差など) を直すと、修復による形の変化を避けられます。",
        "Fix the source polygon (e.g. self-intersections) to avoid shape changes from the repair.",
    ),
    "area_type_unknown": (
        "area_type が urban、suburban、rural 以外です。地物は採用し、値はそのまま残しました。地域区分には使われません。",
        "area_type is not urban, suburban or rural; the feature is kept with its value, but the value is not used as an area class.",
        "地域区分として使う場合は urban、suburban、rural のいずれかにしてください。",
        "Use urban, suburban or rural if the area should count as an area class.",
    ),
}

# code: (message ja, message en, hint ja, hint en)
_ERRORS: dict[str, tuple[str, str, str, str]] = {
    "dataset_missing": (
        "必須のデータセット {dataset} がありません (想定: {expected}、実際: {actual})。",
        "Required dataset missing: {dataset}; expected {expected}, found {actual}.",
        "その日のフォルダに、データセット {dataset} ごとに同じ名前のフォルダを作り、Parquet ファイルを置いてください。",
        "Put a folder named after each dataset ({dataset}) with its Parquet files in the day's folder.",
    ),
    "file_unreadable": (
        "データセット {dataset} のファイルを Parquet として読めません (想定: {expected}、実際: {actual})。",
        "A file of dataset {dataset} cannot be read as Parquet: expected {expected}, found {actual}.",
        "ファイルを送り直すか、Parquet 以外のファイルは拡張子を .parquet にしないでください。入力のファイルが正しく読めるなら、"
        "コピーが傷んでいます。fetch を --force で実行し直してください。",
        "Send the file again, or do not name files that are not Parquet with the .parquet extension. If the client's "
        "file reads correctly, our copy is damaged: run fetch again with --force.",
    ),
    "column_duplicated": (
        "データセット {dataset} の列 {column} が複数あります (想定: {expected}、実際: {actual})。",
        "Dataset {dataset} has column {column} more than once: expected {expected}, found columns {actual}.",
        "列名を一意にし、設定 contract.{dataset}.rename で 2 つの列を同じ名前に対応付けないでください。",
        "Make the column names unique, and do not map two columns to the same name in the setting contract.{dataset}.rename.",
    ),
    "column_missing": (
        "データセット {dataset} に必須の列 {column} がありません (想定: {expected}、実際: {actual})。",
        "Dataset {dataset} has no required column {column}: expected {expected}, found columns {actual}.",
        "列を追加するか、名前が違う場合は設定 contract.{dataset}.rename で対応付けてください。",
        "Add the column, or map the client's name to it in the setting contract.{dataset}.rename.",
    ),
    "type_mismatch": (
        "データセット {dataset} の列 {column} の型を変換できません (想定: {expected}、実際: {actual})。",
        "Column {column} of dataset {dataset} cannot be cast: expected {expected}, found {actual}.",
        "型を直すか、単位や形式が違う場合は設定 contract.{dataset}.units で指定してください (例: epoch_ms、m/s)。",
        "Fix the type, or declare the unit or encoding in the setting contract.{dataset}.units (e.g. epoch_ms, m/s).",
    ),
    "geo_metadata_missing": (
        "データセット {dataset} のファイルに GeoParquet の 'geo' メタデータがありません (想定: {expected}、実際: {actual})。",
        "The file of dataset {dataset} has no GeoParquet 'geo' metadata: expected {expected}, found {actual}.",
        "GeoParquet として書き出すか (geopandas の to_parquet など)、設定 contract.{dataset} に geometry_encoding: WKB と crs を指定してください。",
        "Write the file as GeoParquet (e.g. geopandas to_parquet), or declare geometry_encoding: WKB and crs in the setting contract.{dataset}.",
    ),
    "geometry_encoding_unsupported": (
        "データセット {dataset} の列 {column} のジオメトリ形式に対応していません (想定: {expected}、実際: {actual})。",
        "The geometry encoding of column {column} in dataset {dataset} is not supported: expected {expected}, found {actual}.",
        "ジオメトリを WKB で書き出してください (geopandas の geometry_encoding='WKB')。",
        "Write the geometry as WKB (geopandas geometry_encoding='WKB').",
    ),
    "crs_unknown": (
        "データセット {dataset} の列 {column} の CRS が不明です (想定: {expected}、実際: {actual})。",
        "The CRS of column {column} in dataset {dataset} is unknown: expected {expected}, found {actual}.",
        "GeoParquet メタデータに CRS を書くか、設定 contract.{dataset}.crs に指定してください (例: EPSG:6677)。",
        "Write the CRS into the GeoParquet metadata, or set it in contract.{dataset}.crs (e.g. EPSG:6677).",
    ),
    "time_columns_missing": (
        "データセット {dataset} に時刻の列がありません (想定: {expected}、実際: {actual})。",
        "Dataset {dataset} has no time columns: expected {expected}, found columns {actual}.",
        "頂点ごとの timestamps 列、または start_time と end_time の列を追加してください。",
        "Add a per-vertex timestamps column, or both start_time and end_time columns.",
    ),
}

# Kind of an expected or actual text of a dataset-level error: (template ja, template en). The kinds
# and their parameters are declared in compute.contract.errors. The English text is what str() and
# the manifest give. Parameters are names, types, paths and a reader's own error text, so both
# languages show them as they are.
_ERROR_TEXTS: dict[str, tuple[str, str]] = {
    "text": ("{text}", "{text}"),
    "parquet_files_in_folder": ("{dataset}/*.parquet ≥ 1 個", "{dataset}/*.parquet ≥ 1"),
    "no_parquet_files": ("{folder}/*.parquet = 0 個", "{folder}/*.parquet = 0"),
    "list_separator": ("、", ", "),
    "parquet": ("Parquet 形式", "Parquet"),
    "reader_failed": ("{path} を読めません (pyarrow のエラー: {error})", "{path}: {error}"),
    "column_names_unique": ("列名がそれぞれ 1 回だけ", "each column name once"),
    "column_names_unique_after": ("{setting} の適用後も列名がそれぞれ 1 回だけ", "each column name once after {setting}"),
    "columns_found": ("列 {columns}", "{columns}"),
    "columns_found_case_differs": (
        "列 {columns}。列 {near!r} は大文字と小文字、または空白だけが違います。列名は大文字と小文字を区別します",
        "{columns}; column {near!r} differs only in case or spaces (names are case-sensitive)",
    ),
    "column_of_type": ("{column} 列 ({type} 型)", "{column} ({type})"),
    "renamed_from": ("、元の列名 {source!r} から変更", ", renamed from {source!r}"),
    "time_columns": (
        "timestamps 列 ({timestamps_type} 型)、または start_time 列と end_time 列 ({timestamp_type} 型)",
        "timestamps ({timestamps_type}) or start_time and end_time ({timestamp_type})",
    ),
    "arrow_type": ("{type} 型", "{type}"),
    "cast_failed": (" (変換時のエラー: {error})", " ({error})"),
    "epoch_needs_numbers": (" (単位 {unit} には数値 (整数または小数) の epoch が必要です)", " (unit {unit} needs numeric epochs, integer or float)"),
    "epoch_unit_missing": (
        " (数値の時刻には、設定 contract.{dataset}.units で epoch の単位を指定してください)",
        " (declare an epoch unit in the mapping for numeric times)",
    ),
    "not_iso8601": (" (ISO 8601 の時刻として読めません: {error})", " (not ISO 8601 text: {error})"),
    "time_list_expected": (" (頂点ごとに 1 つの時刻を持つリストが必要です)", " (expected a list with one time per vertex)"),
    "in_source_column": ("、元の列 {source!r}", " in source column {source!r}"),
    "geo_metadata_wkb_crs": ("エンコーディング WKB と CRS を記録した GeoParquet の 'geo' メタデータ", "GeoParquet 'geo' metadata with encoding WKB and a CRS"),
    "no_geo_key": ("スキーマのメタデータに 'geo' キーがありません", "no 'geo' key in the schema metadata"),
    "geo_not_json": ("'geo' メタデータが JSON として不正です ({error})", "'geo' metadata that is not valid JSON ({error})"),
    "geo_without_columns": ("'geo' メタデータに 'columns' オブジェクトがありません: {value}", "'geo' metadata without a 'columns' object: {value}"),
    "geo_column_absent": ("'geo' の columns {columns} に列 {column!r} の項目がありません", "no entry for column {column!r} in 'geo' columns {columns}"),
    "wkb_binary": ("WKB (Arrow の binary 型)", "WKB (Arrow binary)"),
    "encoding": ("エンコーディング {encoding}", "encoding {encoding}"),
    "crs_projjson_or_epsg": ("PROJJSON または EPSG コードの CRS", "a PROJJSON or EPSG CRS"),
    "crs_null": ("GeoParquet メタデータの crs が null (未定義)", "crs null (undefined) in the GeoParquet metadata"),
    "crs_known_to_pyproj": ("pyproj が認識できる CRS", "a CRS known to pyproj"),
    "crs_value": ("CRS の値 {value}", "{value}"),
}

# Detail kind of a rejected row: (template ja, template en). The kinds and their parameters are
# declared in compute.contract.details; the English text is what the rejects file stores.
_DETAILS: dict[str, tuple[str, str]] = {
    "row_of_partition": ("パーティションの {row} 行目", "row {row} of the partition"),
    "row_of_file": ("{file} の先頭を 0 として {row} 行目", "row {row} of {file}, counting from 0"),
    "key_repeated": ("このキーはその日のデータに 2 回以上あります", "the key occurs more than once in the day"),
    "copy_of_file_row": (
        "採用した行は、{file} の先頭を 0 として {row} 行目です",
        "the kept copy is row {row} of {file}, counting from 0",
    ),
    "copy_of_partition_row": (
        "採用した行は、パーティションの先頭を 0 として {row} 行目です",
        "the kept copy is row {row} of the partition, counting from 0",
    ),
    "value_null": ("{column} が空 (null または空白) です", "{column} is null or blank"),
    "vehicle_unknown": ("採用された車両 {accepted_vehicles} 台の中にありません", "not among the {accepted_vehicles} accepted vehicles"),
    "vehicle_row_rejected": (
        "vehicles (車両マスタ) にあるこの車両の行は、理由コード {master_reason} で除外されました。vehicles のその行を直してください",
        "the vehicle's row in vehicles was rejected as {master_reason}; correct that row of the vehicles master",
    ),
    "geometry_null": ("ジオメトリが null です", "geometry is null"),
    "vertices_above_max": (
        "頂点 {vertices} 個、上限 {limit} 個",
        "{vertices} vertices, limit {limit}",
    ),
    "wkb_undecodable": ("WKB として読めない {size_bytes} バイト", "{size_bytes} bytes that are not valid WKB"),
    "types_allowed": ("許可される型: {types}", "allowed: {types}"),
    "no_vertices": ("頂点がありません", "no vertices"),
    "wkb_too_short": ("頂点が 2 つ未満の LineString WKB", "LineString WKB with fewer than 2 vertices"),
    "no_second_point": ("頂点 {vertices} 個、異なる 2 点目なし", "{vertices} vertices, no distinct second point"),
    "geos_invalid": ("GEOS の判定: {problem}{location}", "{problem}{location}"),
    "elevation_infinite": ("頂点 {vertex}: 標高が無限大", "vertex {vertex}: elevation is infinite"),
    "repair_left_no_area": ("{problem}{location}。make_valid の後に面積が残りません", "{problem}{location}; make_valid left no area"),
    "vertex_lon_lat": ("頂点 {vertex}（x = 経度、y = 緯度）", "vertex {vertex} (x = longitude, y = latitude)"),
    "times_null": ("timestamps がなく、start_time または end_time が空です", "no timestamps, and start_time or end_time is null"),
    "timestamp_count": ("頂点 {vertices} 個に対して時刻 {timestamps} 個", "{timestamps} timestamps for {vertices} vertices"),
    "timestamp_null": (
        "頂点 {vertices} 個に対して時刻 {timestamps} 個。時刻が空の頂点があります",
        "{timestamps} timestamps for {vertices} vertices; a timestamp is null",
    ),
    "vertex_outside_window": (
        "頂点 {vertex} の時刻が範囲外 (min_time {min_time}、max_time {max_time})",
        "vertex {vertex}; min_time {min_time}, max_time {max_time}",
    ),
    "outside_window": ("時刻が範囲外 (min_time {min_time}、max_time {max_time})", "min_time {min_time}, max_time {max_time}"),
    "vertex_pair": ("頂点 {first} から {second}", "vertex {first} to {second}"),
    "end_before_start": ("end_time が start_time より前です", "end_time is before start_time"),
    "vertex_speed": (
        "頂点 {first} から {second}: {interval_s:.1f} 秒で {distance_m:.0f} m、上限 {limit_kmh:.12g} km/h",
        "vertex {first} to {second}: {distance_m:.0f} m in {interval_s:.1f} s, limit {limit_kmh:.12g} km/h",
    ),
    "trip_average_speed": (
        "トリップ全体の平均: {duration_s:.0f} 秒で {distance_m:.0f} m、上限 {limit_kmh:.12g} km/h",
        "average over the trip: {distance_m:.0f} m in {duration_s:.0f} s, limit {limit_kmh:.12g} km/h",
    ),
    "speed_above_limit": ("上限 {limit_kmh:.12g} km/h", "limit {limit_kmh:.12g} km/h"),
    "value_negative": ("{column} が負です", "{column} is negative"),
    "above_max": ("{column} が {setting} {limit:.12g} を超えています", "{column} above {setting} {limit:.12g}"),
    "abs_above_max": ("{column} の絶対値が {setting} {limit:.12g} を超えています", "|{column}| above {setting} {limit:.12g}"),
    "outside_lower_exclusive": ("{column} が範囲 ({lower:.12g}, {upper:.12g}] の外です", "{column} outside ({lower:.12g}, {upper:.12g}]"),
    "outside_range": ("{column} が範囲 [{lower:.12g}, {upper:.12g}] の外です", "{column} outside [{lower:.12g}, {upper:.12g}]"),
    "fuel_rate": (
        "{interval_s:.1f} 秒間で {rate_l_per_h:.0f} l/h、上限 {limit_l_per_h:.12g} l/h",
        "{rate_l_per_h:.0f} l/h over {interval_s:.1f} s, limit {limit_l_per_h:.12g} l/h",
    ),
    "values_allowed": ("許可される値: {values}", "allowed: {values}"),
}

# Problems that shapely.is_valid_reason (GEOS) names, in Japanese; the English is GEOS's own name.
_GEOS_PROBLEMS: dict[str, str] = {
    "Self-intersection": "自己交差",
    "Ring Self-intersection": "リングの自己交差",
    "Hole lies outside shell": "穴が外殻の外にあります",
    "Holes are nested": "穴が入れ子になっています",
    "Interior is disconnected": "内部が分断されています",
    "Nested shells": "外殻が入れ子になっています",
    "Duplicate Rings": "リングが重複しています",
    "Too few distinct points in geometry component": "ジオメトリの要素に異なる点が少なすぎます",
    "Invalid Coordinate": "座標が不正です",
    "Ring is not closed": "リングが閉じていません",
    "Repeated Point": "点が重複しています",
}

# Invalid contract settings, raised by the validators of compute.contract.settings.
_SETTINGS: dict[str, tuple[str, str]] = {
    "contract.settings.crs_unknown": (
        "crs {value!r} は pyproj が知らない CRS です。'EPSG:6677' のような CRS を指定してください。",
        "crs {value!r} is not a CRS pyproj knows; use e.g. 'EPSG:6677'",
    ),
    "contract.settings.encoding_without_crs": (
        "geometry_encoding が指定されていますが crs がありません。GeoParquet メタデータのないファイルには両方を指定してください。",
        "geometry_encoding is set but crs is not; declare both for files without GeoParquet metadata",
    ),
    "contract.settings.override_without_crs": (
        "override_file_crs が true ですが crs がありません。crs を指定するか（例: EPSG:6677）、override_file_crs を削除してください。",
        "override_file_crs is true but crs is not set; set crs (e.g. EPSG:6677) or remove override_file_crs",
    ),
    "contract.settings.time_window_reversed": (
        "thresholds.min_time {min_time} が max_time {max_time} より前になっていません。min_time を max_time より前の時刻にしてください。",
        "thresholds.min_time {min_time} is not before max_time {max_time}; set min_time to an earlier time than max_time",
    ),
    "contract.settings.catalog_range_reversed": (
        "thresholds.min_catalog_fuel_economy_km_per_l {lower} が max_catalog_fuel_economy_km_per_l {upper} より小さくありません。"
        "最小値を最大値より小さくしてください。",
        "thresholds.min_catalog_fuel_economy_km_per_l {lower} is not below max_catalog_fuel_economy_km_per_l {upper}; "
        "set the minimum below the maximum",
    ),
    "contract.settings.rename_duplicated": (
        "contract.{dataset}.rename が {sources} を同じ列 {target!r} に対応付けています。この列には元の列を 1 つだけ対応付けてください。",
        "contract.{dataset}.rename maps {sources} to the same column {target!r}; map one source column to it",
    ),
    "contract.settings.rename_unknown_column": (
        "contract.{dataset}.rename が {source!r} を {target!r} に対応付けていますが、{target!r} は {dataset} の列ではありません。"
        "対応付け先を次のいずれかにしてください: {columns}",
        "contract.{dataset}.rename maps {source!r} to {target!r}, which is not a column of {dataset}; expected one of {columns}",
    ),
    "contract.settings.unknown_column": (
        "contract.{dataset}.{part} の {column!r} は {dataset} の列ではありません。次のいずれかの列名にしてください: {columns}",
        "contract.{dataset}.{part} names {column!r}, which is not a column of {dataset}; expected one of {columns}",
    ),
    "contract.settings.unit_unknown": (
        "contract.{dataset}.units が列 {column!r} に単位 {unit!r} を指定していますが、この列では使えません。次のいずれかにしてください: {units}",
        "contract.{dataset}.units gives {column!r} the unit {unit!r}; expected one of {units}",
    ),
    "contract.settings.test_cycle_unknown": (
        "contract.vehicles.values が test_cycle を {values} に変換していますが、試験モードではありません。次のいずれかにしてください: {cycles}",
        "contract.vehicles.values maps test_cycle to {values}; expected one of {cycles}",
    ),
}

_REPORT: dict[str, tuple[str, str]] = {
    "contract.report.title": ("入力データ検証レポート", "Input validation report"),
    "contract.report.status_ok": (
        "すべてのデータセットが契約を満たしています。除外された行は下表のとおりです。",
        "Every dataset meets the contract. Rejected rows are listed below.",
    ),
    "contract.report.status_failed": (
        "データセット単位のエラーがあるため、この日は契約を満たしません。この検証は契約の検査だけを行い、計算はしません。"
        "日次実行では、このエラーで validate フェーズが失敗し、compute（計算）には進みません。以下を直してから、もう一度検証してください。",
        "The day does not meet the contract because of the dataset-level errors below. This check covers the contract only "
        "and computes nothing. A daily run of this day would fail at its validate phase, before compute. Fix the errors and "
        "validate again.",
    ),
    "contract.report.errors": ("データセット単位のエラー", "Dataset-level errors"),
    "contract.report.overview": ("件数", "Row counts"),
    "contract.report.dataset": ("データセット", "Dataset"),
    "contract.report.rows_in": ("入力行数", "Rows in"),
    "contract.report.accepted": ("採用", "Accepted"),
    "contract.report.rejected": ("除外", "Rejected"),
    "contract.report.flagged": ("注記付きで採用", "Accepted with a flag"),
    "contract.report.balance": ("収支", "Balance"),
    "contract.report.balance_ok": ("一致", "holds"),
    "contract.report.balance_broken": ("不一致", "broken"),
    "contract.report.absent": ("なし", "absent"),
    "contract.report.rejects_of": ("{dataset} の除外理由", "Rejects of {dataset}"),
    "contract.report.flags_of": ("{dataset} の注記", "Flags of {dataset}"),
    "contract.report.code": ("コード", "Code"),
    "contract.report.count": ("件数", "Count"),
    "contract.report.meaning": ("意味", "Meaning"),
    "contract.report.example_key": ("例: キー", "Example key"),
    "contract.report.example_value": ("例: 値", "Example value"),
    "contract.report.action": ("対処", "What to do"),
    "contract.report.no_rejects": ("除外された行はありません。", "No rows were rejected."),
    "contract.report.missing": ("ファイルなし", "no files"),
    "contract.report.not_validated": ("未検証", "not validated"),
    "contract.report.missing_action": (
        "{dataset}: 必須のデータセットですが、ファイルがありません。クライアントの {dataset} のファイルを {folder} に "
        "Parquet ファイル（`*.parquet`）で 1 つ以上置いてから、再実行してください。",
        "{dataset}: a required dataset, but it has no files. Put the client's {dataset} files, one or more Parquet files "
        "(`*.parquet`), in {folder}, then run again.",
    ),
    "contract.report.day_folder_of": ("その日のフォルダの {dataset}/", "the {dataset}/ folder of the day"),
    "contract.report.not_validated_note": (
        "「未検証」のデータセットは、上のデータセット単位のエラーで検証が止まったため数えていません。エラーを直して再実行すると数えられます。",
        "Datasets marked \"not validated\" were not counted, because validation stopped at the dataset-level error above. "
        "They are counted when the error is fixed and the day runs again.",
    ),
}


def _register_all() -> None:
    entries: dict[str, dict[str, str]] = {}
    for group, table in (("reason", _REASONS), ("flag", _FLAGS)):
        for code, (meaning_ja, meaning_en, action_ja, action_en) in table.items():
            entries[f"contract.{group}.{code}.meaning"] = {"ja": meaning_ja, "en": meaning_en}
            entries[f"contract.{group}.{code}.action"] = {"ja": action_ja, "en": action_en}
    for code, (text_ja, text_en, hint_ja, hint_en) in _ERRORS.items():
        entries[f"contract.error.{code}"] = {"ja": text_ja, "en": text_en}
        entries[f"contract.error.{code}.hint"] = {"ja": hint_ja, "en": hint_en}
    for kind, (text_ja, text_en) in _DETAILS.items():
        entries[f"contract.detail.{kind}"] = {"ja": text_ja, "en": text_en}
    for kind, (text_ja, text_en) in _ERROR_TEXTS.items():
        entries[f"contract.error_text.{kind}"] = {"ja": text_ja, "en": text_en}
    for problem, text_ja in _GEOS_PROBLEMS.items():
        entries[f"contract.geos.{problem}"] = {"ja": text_ja, "en": problem}
    for key, (text_ja, text_en) in (*_SETTINGS.items(), *_REPORT.items()):
        entries[key] = {"ja": text_ja, "en": text_en}
    register(entries)


_register_all()
