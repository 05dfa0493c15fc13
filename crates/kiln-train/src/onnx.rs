//! ONNX models, run by tract (pure Rust) with kiln's `ai.onnx.ml` operators ([`ml`]) for what
//! scikit-learn exporters emit. [`OnnxModel::from_bytes`] parses the graph once into an
//! optimized tract plan; [`OnnxModel::predict`] maps table columns onto the graph inputs and
//! returns the same [`Predictions`] as a kiln model. The plan is immutable and each call runs
//! with its own state, so one model serves many threads at once without a lock.
//!
//! How columns map onto inputs (see `docs/model-format.md`):
//! - one input per column (skl2onnx from a DataFrame): each input `[N, 1]` reads the column of
//!   its name;
//! - one matrix input `[N, F]`: F columns named by the model's `feature_names` metadata (a JSON
//!   list or comma-separated), else `f0` … `f{F-1}`; when the data has none of those names but
//!   exactly F columns, they are taken in order.
//!
//! Classifiers (a node with `classlabels_*`: LinearClassifier, TreeEnsembleClassifier, ZipMap,
//! …) yield class probabilities from their float `[N, K]` output; everything else is a
//! regressor with one float output. A trailing `ZipMap` is dropped, its input becomes the
//! output.

mod ml;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef};
use kiln_table::{ColumnKind, Table};
use tract_onnx::pb::{self, tensor_proto::DataType, type_proto, ModelProto};
use tract_onnx::prelude::{
    Datum, DatumType, Framework, InferenceFact, InferenceModelExt, IntoTValue, IntoTensor, Tensor,
    TypedFact, TypedModel, TypedSimplePlan,
};
use tract_onnx::tract_hir::internal::{tvec, DimLike, TValue, TVec, ToDim};
use tract_onnx::tract_hir::tract_ndarray::{Array1, Array2};

use crate::artifact::Predictions;
use crate::frame::{FieldKind, InputField, Signature, TargetField, Task};
use crate::TrainError;

/// Rows per tract run; bounds the memory of one batch.
const CHUNK_ROWS: usize = 16_384;

/// Element type of an ONNX graph input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputType {
    Float,
    Double,
    Int64,
    Int32,
    Bool,
    String,
}

impl InputType {
    fn from_proto(elem: i32) -> Option<Self> {
        Some(match DataType::from_i32(elem)? {
            DataType::Float => Self::Float,
            DataType::Double => Self::Double,
            DataType::Int64 => Self::Int64,
            DataType::Int32 => Self::Int32,
            DataType::Bool => Self::Bool,
            DataType::String => Self::String,
            _ => return None,
        })
    }

    fn datum_type(self) -> DatumType {
        match self {
            Self::Float => f32::datum_type(),
            Self::Double => f64::datum_type(),
            Self::Int64 => i64::datum_type(),
            Self::Int32 => i32::datum_type(),
            Self::Bool => bool::datum_type(),
            Self::String => String::datum_type(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Float => "float",
            Self::Double => "double",
            Self::Int64 => "int64",
            Self::Int32 => "int32",
            Self::Bool => "bool",
            Self::String => "string",
        }
    }
}

/// One graph input and the table columns that feed it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxInput {
    pub name: String,
    pub dtype: InputType,
    /// `[N]` (false) or `[N, columns]` (true).
    pub matrix: bool,
    pub columns: Vec<String>,
    /// The column names are made up (`f0`…), so the data may give the columns by position.
    pub positional: bool,
}

/// A loaded ONNX model, ready to predict. Cheap to share (`Arc` inside); `Send + Sync`.
#[derive(Clone)]
pub struct OnnxModel {
    source: String,
    plan: Arc<TypedSimplePlan<TypedModel>>,
    inputs: Vec<OnnxInput>,
    signature: Signature,
    producer: String,
    operators: Vec<String>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("source", &self.source)
            .field("inputs", &self.inputs)
            .field("signature", &self.signature)
            .field("producer", &self.producer)
            .finish_non_exhaustive()
    }
}

fn err(source: &str, message: impl Into<String>) -> TrainError {
    TrainError::Onnx {
        model: source.to_string(),
        message: message.into(),
    }
}

/// Run `f`, turning a panic inside tract into an error naming the model.
fn guarded<T>(
    source: &str,
    what: &str,
    f: impl FnOnce() -> Result<T, TrainError>,
) -> Result<T, TrainError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(err(
            source,
            format!("the ONNX runtime failed while {what} (internal panic)"),
        ))
    })
}

/// Whether `bytes` look like a serialized ONNX `ModelProto` (field 1, `ir_version`, first).
pub fn looks_like_onnx(bytes: &[u8]) -> bool {
    bytes.first() == Some(&0x08)
}

/// `feature_names` metadata: a JSON list of strings or comma-separated names.
fn feature_names(proto: &ModelProto) -> Option<Vec<String>> {
    let value = proto
        .metadata_props
        .iter()
        .find(|p| p.key == "feature_names" || p.key == "kiln.feature_names")?
        .value
        .trim()
        .to_string();
    if value.starts_with('[') {
        serde_json::from_str::<Vec<String>>(&value).ok()
    } else {
        Some(value.split(',').map(|s| s.trim().to_string()).collect())
    }
}

fn metadata<'a>(proto: &'a ModelProto, keys: &[&str]) -> Option<&'a str> {
    proto
        .metadata_props
        .iter()
        .find(|p| keys.contains(&p.key.as_str()))
        .map(|p| p.value.as_str())
}

/// Drop `ZipMap` nodes whose output is a graph output: the output becomes the probability
/// tensor they read. Returns ZipMap's class labels, if any.
fn strip_zipmap(
    graph: &mut pb::GraphProto,
    source: &str,
) -> Result<Option<ml::Labels>, TrainError> {
    let mut labels = None;
    let mut i = 0;
    while i < graph.node.len() {
        if graph.node[i].op_type != "ZipMap" {
            i += 1;
            continue;
        }
        let node = graph.node.remove(i);
        let (Some(input), Some(output)) = (node.input.first(), node.output.first()) else {
            return Err(err(
                source,
                format!("ZipMap node `{}` has no input or output", node.name),
            ));
        };
        if let Some(user) = graph.node.iter().find(|n| n.input.contains(output)) {
            return Err(err(
                source,
                format!(
                    "ZipMap node `{}` feeds node `{}`; kiln only supports ZipMap as a final output (export with options={{'zipmap': False}})",
                    node.name, user.name
                ),
            ));
        }
        let already = graph.output.iter().any(|o| &o.name == input);
        graph.output.retain_mut(|o| {
            if &o.name == output {
                if already {
                    return false;
                }
                o.name.clone_from(input);
                o.r#type = None;
            }
            true
        });
        labels = ml::Labels::of(&node).or(labels);
    }
    Ok(labels)
}

/// The class labels of the last classifier node.
fn classifier_labels(graph: &pb::GraphProto) -> Option<ml::Labels> {
    graph.node.iter().rev().find_map(ml::Labels::of)
}

fn graph_inputs(
    proto: &ModelProto,
    graph: &pb::GraphProto,
    source: &str,
) -> Result<Vec<OnnxInput>, TrainError> {
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut inputs = Vec::new();
    for input in graph
        .input
        .iter()
        .filter(|i| !initializers.contains(i.name.as_str()))
    {
        let name = input.name.clone();
        let Some(type_proto::Value::TensorType(t)) =
            input.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            return Err(err(
                source,
                format!(
                    "input `{name}` is not a tensor (sequence and map inputs are not supported)"
                ),
            ));
        };
        let Some(dtype) = InputType::from_proto(t.elem_type) else {
            return Err(err(
                source,
                format!("input `{name}` has element type {}; kiln feeds float, double, int64, int32, bool or string", t.elem_type),
            ));
        };
        let dims: Vec<Option<i64>> = t.shape.as_ref().map_or_else(Vec::new, |s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => Some(v),
                    _ => None,
                })
                .collect()
        });
        let (matrix, width) = match dims.as_slice() {
            [_] => (false, 1),
            [_, Some(w)] if *w > 0 => (true, usize::try_from(*w).unwrap_or(0)),
            [_, _] => {
                return Err(err(
                    source,
                    format!("input `{name}` has an unknown number of columns; kiln needs a fixed shape [N, F]"),
                ))
            }
            _ => {
                return Err(err(
                    source,
                    format!("input `{name}` has rank {}; kiln feeds tables as [rows] or [rows, columns]", dims.len()),
                ))
            }
        };
        inputs.push(OnnxInput {
            name,
            dtype,
            matrix,
            columns: Vec::new(),
            positional: false,
        });
        if let Some(last) = inputs.last_mut() {
            last.columns = if width == 1 {
                vec![last.name.clone()]
            } else {
                (0..width).map(|j| format!("{}_{j}", last.name)).collect()
            };
        }
    }
    if inputs.is_empty() {
        return Err(err(source, "the graph has no inputs"));
    }
    // A single matrix input: name its columns from the metadata, or f0..
    if let [only] = inputs.as_mut_slice() {
        let width = only.columns.len();
        if only.matrix {
            only.positional = true;
            match feature_names(proto) {
                Some(names) if names.len() == width => {
                    only.columns = names;
                    only.positional = false;
                }
                Some(names) => {
                    return Err(err(
                        source,
                        format!(
                            "metadata `feature_names` lists {} names but input `{}` has {width} columns",
                            names.len(),
                            only.name
                        ),
                    ))
                }
                None if width == 1 => {}
                None => only.columns = (0..width).map(|j| format!("f{j}")).collect(),
            }
        }
    }
    Ok(inputs)
}

fn float_output(fact: &TypedFact) -> bool {
    matches!(fact.datum_type, DatumType::F32 | DatumType::F64)
}

fn dim(fact: &TypedFact, axis: usize) -> Option<usize> {
    fact.shape
        .as_ref()
        .get(axis)
        .and_then(|d| d.to_usize().ok())
}

impl OnnxModel {
    /// Read and prepare an `.onnx` file.
    pub fn load(path: &std::path::Path) -> Result<Self, TrainError> {
        let bytes = fs_err::read(path).map_err(|err| TrainError::Io {
            path: path.display().to_string(),
            err,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parse a serialized ONNX model; `source` names it in errors.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<Self, TrainError> {
        guarded(source, "loading the model", || Self::build(bytes, source))
    }

    fn build(bytes: &[u8], source: &str) -> Result<Self, TrainError> {
        let mut onnx = tract_onnx::onnx();
        ml::register(&mut onnx.op_register);
        let mut proto = onnx
            .proto_model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(|e| err(source, format!("not a valid ONNX file ({e})")))?;
        let producer = format!("{} {}", proto.producer_name, proto.producer_version)
            .trim()
            .to_string();
        let Some(mut graph) = proto.graph.take() else {
            return Err(err(source, "the file holds no graph"));
        };
        let mut operators: Vec<String> = Vec::new();
        for node in &graph.node {
            let op = if node.domain.is_empty() || node.domain == "ai.onnx" {
                node.op_type.clone()
            } else {
                format!("{}.{}", node.domain, node.op_type)
            };
            if node.domain == "ai.onnx.ml" && !ml::SUPPORTED_ML_OPS.contains(&node.op_type.as_str())
            {
                return Err(err(
                    source,
                    format!(
                        "operator `{op}` (node `{}`) is not supported; kiln runs these ai.onnx.ml operators: {}",
                        node.name,
                        ml::SUPPORTED_ML_OPS.join(", ")
                    ),
                ));
            }
            if !operators.contains(&op) {
                operators.push(op);
            }
        }
        let zipmap_labels = strip_zipmap(&mut graph, source)?;
        let labels = zipmap_labels.or_else(|| classifier_labels(&graph));
        let mut inputs = graph_inputs(&proto, &graph, source)?;
        proto.graph = Some(graph);

        let mut model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| err(source, format!("cannot read the graph: {e:#}")))?;
        let batch = model.symbols.sym("N");
        let outlets = model
            .input_outlets()
            .map_err(|e| err(source, e.to_string()))?
            .to_vec();
        for (ix, outlet) in outlets.iter().enumerate() {
            let name = model.node(outlet.node).name.clone();
            let Some(input) = inputs.iter().find(|i| i.name == name) else {
                return Err(err(
                    source,
                    format!("graph input `{name}` has no declared type"),
                ));
            };
            let shape: TVec<tract_onnx::prelude::TDim> = if input.matrix {
                tvec![batch.to_dim(), input.columns.len().to_dim()]
            } else {
                tvec![batch.to_dim()]
            };
            model
                .set_input_fact(ix, InferenceFact::dt_shape(input.dtype.datum_type(), shape))
                .map_err(|e| err(source, e.to_string()))?;
        }
        // Graph input order, as tract feeds them.
        let order: Vec<String> = outlets
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        inputs.sort_by_key(|i| order.iter().position(|n| *n == i.name));

        let mut typed = model
            .into_typed()
            .map_err(|e| err(source, format!("cannot analyse the graph: {e:#}")))?;
        let outputs = typed
            .output_outlets()
            .map_err(|e| err(source, e.to_string()))?
            .to_vec();
        let facts: Vec<TypedFact> = outputs
            .iter()
            .map(|o| typed.outlet_fact(*o).cloned())
            .collect::<Result<_, _>>()
            .map_err(|e| err(source, e.to_string()))?;
        let name_of = |i: usize| {
            typed
                .outlet_label(outputs[i])
                .unwrap_or_default()
                .to_lowercase()
        };

        let (chosen, task, classes) = match &labels {
            Some(labels) => {
                let k = labels.len();
                let pick = (0..facts.len())
                    .filter(|&i| float_output(&facts[i]) && facts[i].shape.rank() == 2)
                    .max_by_key(|&i| (dim(&facts[i], 1) == Some(k), name_of(i).contains("prob")));
                let Some(i) = pick else {
                    return Err(err(
                        source,
                        "the classifier has no float [N, classes] probability output",
                    ));
                };
                if let Some(w) = dim(&facts[i], 1) {
                    if w != k {
                        return Err(err(
                            source,
                            format!("the probability output has {w} columns for {k} class labels"),
                        ));
                    }
                }
                (i, Task::Classification, labels.texts())
            }
            None => {
                let pick = (0..facts.len()).find(|&i| float_output(&facts[i]));
                let Some(i) = pick else {
                    return Err(err(source, "the model has no float output to predict"));
                };
                match (facts[i].shape.rank(), dim(&facts[i], 1)) {
                    (1, _) | (2, Some(1)) => (i, Task::Regression, Vec::new()),
                    (2, Some(k)) if name_of(i).contains("prob") => {
                        (i, Task::Classification, (0..k).map(|c| c.to_string()).collect())
                    }
                    (rank, width) => {
                        return Err(err(
                            source,
                            format!(
                                "output `{}` has shape rank {rank}, width {width:?}; kiln predicts one value per row (regression) or class probabilities",
                                name_of(i)
                            ),
                        ))
                    }
                }
            }
        };
        typed
            .set_output_outlets(&[outputs[chosen]])
            .map_err(|e| err(source, e.to_string()))?;
        let plan = typed
            .into_optimized()
            .and_then(TypedModel::into_runnable)
            .map_err(|e| err(source, format!("cannot prepare the graph: {e:#}")))?;

        let signature = Signature {
            inputs: inputs
                .iter()
                .flat_map(|i| {
                    let kind = match i.dtype {
                        InputType::Bool => FieldKind::Boolean,
                        InputType::String => FieldKind::Categorical,
                        _ => FieldKind::Numeric,
                    };
                    i.columns.iter().map(move |c| InputField {
                        name: c.clone(),
                        kind,
                        categories: Vec::new(),
                    })
                })
                .collect(),
            target: TargetField {
                name: metadata(&proto, &["target", "kiln.target"])
                    .unwrap_or_default()
                    .to_string(),
                task,
                classes,
            },
        };
        Ok(Self {
            source: source.to_string(),
            plan: Arc::new(plan),
            inputs,
            signature,
            producer,
            operators,
        })
    }

    /// Where the model was read from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Input columns, task and classes. The target name is the model's `target` metadata, or
    /// empty.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Name the label column (for evaluation) when the model's metadata does not.
    pub fn set_target(&mut self, name: &str) {
        name.clone_into(&mut self.signature.target.name);
    }

    /// The graph inputs and the columns feeding each.
    pub fn inputs(&self) -> &[OnnxInput] {
        &self.inputs
    }

    /// `producer_name producer_version` from the file (e.g. `skl2onnx 1.20.0`).
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// Operators in the graph, `domain.op` outside the default domain.
    pub fn operators(&self) -> &[String] {
        &self.operators
    }

    /// The table columns feeding each input: by name, or by position for an unnamed matrix.
    fn columns_for(&self, table: &Table) -> Result<Vec<Vec<String>>, TrainError> {
        let available = || {
            table
                .columns()
                .map(|c| c.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            let missing: Vec<&String> = input
                .columns
                .iter()
                .filter(|c| table.column(c).is_none())
                .collect();
            if missing.is_empty() {
                out.push(input.columns.clone());
                continue;
            }
            let width = input.columns.len();
            if input.positional && self.inputs.len() == 1 && table.num_columns() == width {
                out.push(table.columns().map(|c| c.name.to_string()).collect());
                continue;
            }
            let first = missing.first().map(|c| c.as_str()).unwrap_or_default();
            let message = if input.positional {
                format!(
                    "ONNX model `{}` takes {width} columns (input `{}` [N, {width}]): name them {}..{} or give exactly {width} columns, in order; `{}` has {} column(s): {}",
                    self.source,
                    input.name,
                    input.columns.first().map(String::as_str).unwrap_or_default(),
                    input.columns.last().map(String::as_str).unwrap_or_default(),
                    table.source(),
                    table.num_columns(),
                    available()
                )
            } else {
                format!(
                    "Column `{first}` not found ({} of the {width} column(s) ONNX model `{}` reads through input `{}` are missing); the data has: {}",
                    missing.len(),
                    self.source,
                    input.name,
                    available()
                )
            };
            return Err(TrainError::Input(message));
        }
        Ok(out)
    }

    /// Predict every row of `table`: class probabilities (classes in [`Signature`] order) or
    /// values. Missing numbers are fed as NaN.
    pub fn predict(&self, table: &Table) -> Result<Predictions, TrainError> {
        let columns = self.columns_for(table)?;
        let mut data = Vec::with_capacity(self.inputs.len());
        for (input, cols) in self.inputs.iter().zip(&columns) {
            let values = cols
                .iter()
                .map(|c| read_cells(table, c, input))
                .collect::<Result<Vec<_>, _>>()?;
            data.push(values);
        }
        self.run_cells(&data, table.num_rows())
    }

    /// Predict `n_rows` rows given as columns, one per field of [`Self::signature`]'s inputs
    /// and in that order (numbers with NaN for missing, or texts): the path for callers that
    /// already hold decoded values, such as `kiln serve`, without building a table.
    pub fn predict_columns(
        &self,
        n_rows: usize,
        columns: Vec<OnnxColumn>,
    ) -> Result<Predictions, TrainError> {
        let expected = self.signature.inputs.len();
        if columns.len() != expected {
            return Err(TrainError::Input(format!(
                "ONNX model `{}` reads {expected} column(s); {} given",
                self.source,
                columns.len()
            )));
        }
        let mut data = Vec::with_capacity(self.inputs.len());
        let mut columns = columns.into_iter();
        for input in &self.inputs {
            let mut cells = Vec::with_capacity(input.columns.len());
            for name in &input.columns {
                let Some(column) = columns.next() else {
                    break;
                };
                let len = match &column {
                    OnnxColumn::Numbers(v) => v.len(),
                    OnnxColumn::Texts(v) => v.len(),
                };
                if len != n_rows {
                    return Err(TrainError::Input(format!(
                        "Column `{name}` has {len} values for {n_rows} rows"
                    )));
                }
                let column = match column {
                    OnnxColumn::Numbers(v) => {
                        check_whole(name, input, &v)?;
                        Cells::Numbers(v)
                    }
                    OnnxColumn::Texts(_) if input.dtype != InputType::String => {
                        return Err(TrainError::Input(format!(
                            "Column `{name}` is text, but ONNX input `{}` takes {} numbers",
                            input.name,
                            input.dtype.as_str()
                        )));
                    }
                    OnnxColumn::Texts(v) => Cells::Texts(v),
                };
                cells.push(column);
            }
            data.push(cells);
        }
        self.run_cells(&data, n_rows)
    }

    /// Run the graph over `n` rows of each input's columns, in chunks.
    fn run_cells(&self, data: &[Vec<Cells>], n: usize) -> Result<Predictions, TrainError> {
        let classification = self.signature.target.task == Task::Classification;
        let k = self.signature.target.classes.len();
        let mut proba = Vec::new();
        let mut values = Vec::new();
        let mut start = 0;
        while start < n {
            let end = (start + CHUNK_ROWS).min(n);
            let tensors = self
                .inputs
                .iter()
                .zip(data)
                .map(|(input, cols)| tensor_for(input, cols, start, end))
                .collect::<Result<TVec<TValue>, _>>()
                .map_err(|e| err(&self.source, e))?;
            let out = guarded(&self.source, "predicting", || {
                self.plan
                    .run(tensors)
                    .map_err(|e| err(&self.source, format!("prediction failed: {e:#}")))
            })?;
            let Some(first) = out.first() else {
                return Err(err(&self.source, "the graph produced no output"));
            };
            let first = first
                .cast_to::<f64>()
                .map_err(|e| err(&self.source, e.to_string()))?;
            let flat = first
                .as_slice::<f64>()
                .map_err(|e| err(&self.source, e.to_string()))?;
            let rows = end - start;
            if classification {
                if flat.len() != rows * k {
                    return Err(err(
                        &self.source,
                        format!(
                            "the model returned {} probabilities for {rows} rows of {k} classes",
                            flat.len()
                        ),
                    ));
                }
                proba.extend(flat.chunks(k.max(1)).map(<[f64]>::to_vec));
            } else {
                if flat.len() != rows {
                    return Err(err(
                        &self.source,
                        format!("the model returned {} values for {rows} rows", flat.len()),
                    ));
                }
                values.extend_from_slice(flat);
            }
            start = end;
        }
        Ok(if classification {
            Predictions::Proba(proba)
        } else {
            Predictions::Values(values)
        })
    }
}

/// One input column's values for [`OnnxModel::predict_columns`].
#[derive(Debug, Clone, PartialEq)]
pub enum OnnxColumn {
    /// Numbers, NaN for missing; whole numbers for integer and boolean inputs (a string input
    /// gets their decimal text).
    Numbers(Vec<f64>),
    /// Texts for string inputs; `None` is missing (fed as the empty string).
    Texts(Vec<Option<String>>),
}

/// One column's cells, as the input needs them.
enum Cells {
    Numbers(Vec<f64>),
    Texts(Vec<Option<String>>),
}

fn numeric_cell(array: &ArrayRef, i: usize) -> Option<f64> {
    if array.is_null(i) {
        return Some(f64::NAN);
    }
    if let Some(a) = array.as_primitive_opt::<Float64Type>() {
        return Some(a.value(i));
    }
    if let Some(a) = array.as_primitive_opt::<Int64Type>() {
        #[expect(clippy::cast_precision_loss, reason = "model inputs are floats")]
        return Some(a.value(i) as f64);
    }
    if let Some(a) = array.as_boolean_opt() {
        return Some(if a.value(i) { 1.0 } else { 0.0 });
    }
    if let Some(a) = array.as_primitive_opt::<Date32Type>() {
        return Some(f64::from(a.value(i)) * 86_400.0);
    }
    if let Some(a) = array.as_primitive_opt::<TimestampMicrosecondType>() {
        #[expect(clippy::cast_precision_loss, reason = "seconds since the epoch")]
        return Some(a.value(i) as f64 / 1e6);
    }
    None
}

fn text_cell(array: &ArrayRef, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    if let Some(a) = array.as_string_opt::<i32>() {
        return Some(a.value(i).to_string());
    }
    if let Some(a) = array.as_primitive_opt::<Int64Type>() {
        return Some(a.value(i).to_string());
    }
    if let Some(a) = array.as_boolean_opt() {
        return Some(a.value(i).to_string());
    }
    numeric_cell(array, i).map(|v| v.to_string())
}

fn read_cells(table: &Table, name: &str, input: &OnnxInput) -> Result<Cells, TrainError> {
    let Some(col) = table.column(name) else {
        return Err(TrainError::MissingColumn {
            column: name.to_string(),
            available: table
                .columns()
                .map(|c| c.name.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let arrays = table.batches().iter().map(|b| b.column(col.index));
    if input.dtype == InputType::String {
        return Ok(Cells::Texts(
            arrays
                .flat_map(|a| (0..a.len()).map(move |i| text_cell(a, i)))
                .collect(),
        ));
    }
    if matches!(col.kind, ColumnKind::Categorical | ColumnKind::Text) {
        return Err(TrainError::Input(format!(
            "Column `{name}` is {}, but ONNX input `{}` takes {} numbers",
            col.kind,
            input.name,
            input.dtype.as_str()
        )));
    }
    let mut out = Vec::with_capacity(table.num_rows());
    for a in arrays {
        for i in 0..a.len() {
            out.push(numeric_cell(a, i).unwrap_or(f64::NAN));
        }
    }
    check_whole(name, input, &out)?;
    Ok(Cells::Numbers(out))
}

/// Integer and boolean inputs take whole numbers only.
fn check_whole(name: &str, input: &OnnxInput, values: &[f64]) -> Result<(), TrainError> {
    if matches!(
        input.dtype,
        InputType::Int64 | InputType::Int32 | InputType::Bool
    ) {
        if let Some(row) = values
            .iter()
            .position(|v| !v.is_finite() || v.fract() != 0.0)
        {
            return Err(TrainError::Input(format!(
                "Column `{name}` at data row {} is missing or not a whole number, but ONNX input `{}` takes {} values",
                row + 1,
                input.name,
                input.dtype.as_str()
            )));
        }
    }
    Ok(())
}

/// Rows `start..end` of an input's columns as a tensor of its type and shape.
fn tensor_for(
    input: &OnnxInput,
    cols: &[Cells],
    start: usize,
    end: usize,
) -> Result<TValue, String> {
    let rows = end - start;
    let width = cols.len();
    let shape_err = |e: tract_onnx::tract_hir::tract_ndarray::ShapeError| e.to_string();
    macro_rules! build {
        ($ty:ty, $conv:expr) => {{
            let mut v: Vec<$ty> = Vec::with_capacity(rows * width);
            for r in start..end {
                for c in cols {
                    match c {
                        Cells::Numbers(n) => v.push($conv(n[r])),
                        Cells::Texts(_) => {
                            return Err(format!("input `{}` takes numbers", input.name))
                        }
                    }
                }
            }
            if input.matrix {
                Array2::from_shape_vec((rows, width), v)
                    .map_err(shape_err)?
                    .into_tensor()
            } else {
                Array1::from_vec(v).into_tensor()
            }
        }};
    }
    #[expect(
        clippy::cast_possible_truncation,
        reason = "integer inputs were checked to hold whole numbers; float32 inputs round as in numpy"
    )]
    let tensor: Tensor = match input.dtype {
        InputType::Float => build!(f32, |x: f64| x as f32),
        InputType::Double => build!(f64, |x: f64| x),
        InputType::Int64 => build!(i64, |x: f64| x as i64),
        InputType::Int32 => build!(i32, |x: f64| x as i32),
        InputType::Bool => build!(bool, |x: f64| x != 0.0),
        InputType::String => {
            let mut v: Vec<String> = Vec::with_capacity(rows * width);
            for r in start..end {
                for c in cols {
                    match c {
                        Cells::Texts(t) => v.push(t[r].clone().unwrap_or_default()),
                        Cells::Numbers(n) => v.push(n[r].to_string()),
                    }
                }
            }
            if input.matrix {
                Array2::from_shape_vec((rows, width), v)
                    .map_err(shape_err)?
                    .into_tensor()
            } else {
                Array1::from_vec(v).into_tensor()
            }
        }
    };
    Ok(tensor.into_tvalue())
}

#[cfg(test)]
mod tests;
